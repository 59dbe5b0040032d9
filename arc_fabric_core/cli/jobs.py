"""`python -m arc_fabric_core jobs ...`: the persisted queue from the command line.

    jobs submit generate model=wan21 [variant=tiny] [schedule=NAME [boundary=B]] [prompt=... steps=... shift=...]
                    [--priority N]
    jobs submit resume session=ID
    jobs submit fork session=ID step=K [prompt=...]
    jobs submit edit session=ID step=K|strength=S [rect=x0,y0,x1,y1] [frames=A:B] [prompt=...]
    jobs submit decode session=ID [step=K]     the video (or a checkpoint's preview), made where the model is
    jobs submit extend session=ID blocks=N [prompt=...]    (and rewind, hand-off, a plugin's operations:
                                               KIND session=ID with the fields of its request)
    jobs list [--json]
    jobs cancel ID | requeue ID
    jobs pause | unpause
    jobs work [--executor inprocess|subprocess] [--python MODEL=PYTHON] [--model-memory 40G] [--cpu-tier 64G]
                               run queued jobs until none is left (here, or in a worker per plugin env)

The queue is --db, else $ARC_FABRIC_QUEUE, else outputs/jobs.sqlite; sessions go to the
store (--store, $ARC_FABRIC_STORE, else outputs/sessions).
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from arc_fabric_core.contract.errors import InputError


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m arc_fabric_core jobs", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--db", type=Path, default=None, help="queue file (default: $ARC_FABRIC_QUEUE or outputs/jobs.sqlite)"
    )
    ap.add_argument("--store", type=Path, default=None, help="session store")
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p = sub.add_parser("submit", help="queue a job")
    from arc_fabric_core.dispatch.plugins import get_plugins

    p.add_argument("kind", choices=list(get_plugins().operations()))  # every registered operation
    p.add_argument("items", nargs="*", metavar="key=value")
    p.add_argument("--priority", type=int, default=0, help="higher runs first (default 0)")
    p = sub.add_parser("list", help="every job with its state")
    p.add_argument("--json", action="store_true")
    for name, text in (("cancel", "cancel a queued or running job"), ("requeue", "run an interrupted job again")):
        sub.add_parser(name, help=text).add_argument("id", type=int)
    sub.add_parser("pause", help="start no new job")
    sub.add_parser("unpause", help="start jobs again")
    p = sub.add_parser("work", help="run queued jobs until none is left")
    from arc_fabric_core.jobs.runtime_setup import executor_names

    p.add_argument(
        "--executor",
        choices=executor_names(),
        default="inprocess",
        help="run jobs here, or in a worker process per plugin env (default: inprocess)",
    )
    p.add_argument(
        "--python",
        action="append",
        default=[],
        metavar="MODEL=PYTHON",
        help="with --executor subprocess: the interpreter for a model's jobs (default: its env from "
        "`env create`, else this interpreter)",
    )
    p.add_argument("--device", default="auto", help="auto (the model cache places models), cpu, cuda:N")
    p.add_argument("--model-memory", default=None, help="cap on warm models per device, e.g. 40G")
    p.add_argument("--cpu-tier", default=None, help="RAM that keeps evicted GPU models warm, e.g. 64G")
    return ap


def main(argv: list[str]) -> None:
    from arc_fabric_core.cli.common import run_subcommand

    run_subcommand(
        _parser(),
        argv,
        "items",
        _dispatch,
        "interrupted; a running job is marked interrupted when the queue next opens",
    )


def payload_from(kind: str, items: list[str]) -> dict[str, Any]:
    """key=value pairs to a job payload, as the operation of ``kind`` spells it
    (:meth:`~arc_fabric_core.contract.command_line.CommandLine.job_payload`): the fields of
    its request at the top, typed from their annotations; the other keys its parameters
    (generate) or overrides (fork, edit), else refused."""
    from arc_fabric_core.contract.command_line import parse_overrides
    from arc_fabric_core.dispatch.plugins import get_plugins

    # The generate command line's spelling works too: model.variant=, model.weights=.
    items = [i.removeprefix("model.") if i.startswith(("model.variant=", "model.weights=")) else i for i in items]
    return get_plugins().operation(kind).job_payload(parse_overrides(items))


def _dispatch(args: argparse.Namespace) -> None:
    from arc_fabric_core.jobs.queue import JobQueue

    db = args.db or Path(os.environ.get("ARC_FABRIC_QUEUE") or "outputs/jobs.sqlite")
    queue = JobQueue(db)
    for job_id in queue.recovered:
        print(f"job {job_id}: interrupted (the queue was not closed cleanly); `jobs requeue {job_id}` resumes it")
    if args.command in ("cancel", "requeue") and not 1 <= args.id <= 2**62:  # SQLite holds 64-bit ids
        raise InputError("id", f"no job {args.id}; job ids are whole numbers from 1 (see `jobs list`)")
    if args.command == "submit":
        from arc_fabric_core.jobs.checks import check_priority

        check_priority(args.priority)
        payload = payload_from(args.kind, args.items)
        _check(args, payload)
        job = queue.submit(args.kind, payload, priority=args.priority)
        print(f"job {job.id}: queued ({job.kind}, priority {job.priority})")
    elif args.command == "list":
        jobs = queue.list()
        if args.json:
            print(json.dumps([{**j.__dict__, "state": j.state.value} for j in jobs], indent=2))
        else:
            print(f"queue {db}{' (paused)' if queue.paused else ''}")
            for j in jobs:
                extra = f"  {j.error}" if j.error else ""
                print(f"{j.id:>4}  {j.state.value:<11} {j.kind:<8} p{j.priority:<3} {j.session_id or '-'}{extra}")
    elif args.command == "cancel":
        job = queue.cancel(args.id)
        print(f"job {job.id}: {'stopping at the next step' if job.state == 'running' else job.state.value}")
    elif args.command == "requeue":
        job = queue.requeue(args.id)
        print(f"job {job.id}: queued again ({job.kind})")
    elif args.command == "pause":
        queue.pause()
        print("queue paused: running jobs finish, no new one starts")
    elif args.command == "unpause":
        queue.unpause()
        print("queue running")
    else:
        _work(queue, args)


def _check(args: argparse.Namespace, payload: dict[str, Any]) -> None:
    """Refuse now what the job would be refused for when it runs: the checks the server's
    API runs, by an engine over the store the workers use. A session id may be abbreviated
    as in ``sessions``: the payload gets the whole id."""
    from arc_fabric_core.cli.sessions import resolve_id
    from arc_fabric_core.contract.errors import UnknownModelError
    from arc_fabric_core.jobs.checks import validate_job
    from arc_fabric_core.jobs.runtime_setup import RuntimeSettings, build_engine
    from arc_fabric_core.runtime.envs import find_env
    from arc_fabric_core.store.files import default_store_dir

    # Checks only (nothing loads): on the CPU, over the store the workers use.
    engine = build_engine(RuntimeSettings(store_dir=args.store or default_store_dir(), device="cpu"))
    if "session" in payload:
        try:
            payload["session"] = resolve_id(engine.store, str(payload["session"]))
        except InputError as exc:
            raise InputError("session", exc.message) from None
    try:
        validate_job(engine, args.kind, payload)
    except UnknownModelError:
        # Installed only in its own env (`env create`): its worker checks the rest.
        if args.kind == "generate":
            model = str(payload["model"])
        else:
            model = engine.store.load_doc(str(payload["session"])).model.name
        if find_env(model) is None:
            raise
        print(f"{model} lives in its own env: the job's parameters are checked when it starts")


def _work(queue: Any, args: argparse.Namespace) -> None:
    from arc_fabric_core.jobs.queue import JobRunner
    from arc_fabric_core.jobs.runtime_setup import RuntimeSettings, build_executor
    from arc_fabric_core.runtime.devices import parse_bytes
    from arc_fabric_core.store.files import default_store_dir

    pythons = {}
    if args.executor != "inprocess":  # jobs run by workers
        import logging
        import sys

        # Say which interpreter each worker runs with, and when it is ready.
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        executors_log = logging.getLogger("arc_fabric_core.jobs.executors")
        executors_log.addHandler(handler)
        executors_log.setLevel(logging.INFO)
        for item in args.python:
            model, sep, python = item.partition("=")
            if not sep or not model or not python:
                raise InputError("--python", f"expected MODEL=PATH_TO_PYTHON, got {item!r}")
            pythons[model] = python
    settings = RuntimeSettings(
        store_dir=args.store or default_store_dir(),
        device=args.device,
        model_memory=parse_bytes(args.model_memory, "--model-memory") if args.model_memory else None,
        cpu_tier=parse_bytes(args.cpu_tier, "--cpu-tier") if args.cpu_tier else 0,
        executor=args.executor,
        pythons=pythons,
    )
    executor = build_executor(settings)
    runner = JobRunner(queue, executor=executor)
    count = 0
    try:
        # Each job's log, as it happens (the server streams the same lines).
        while (job := runner.run_next(on_log=lambda line: print(f"  {line}", flush=True))) is not None:
            count += 1
            print(f"job {job.id}: {job.state.value}{f' ({job.error})' if job.error else ''} session {job.session_id}")
    finally:
        executor.close()
    print(f"{count} jobs run; queue {'paused' if queue.paused else 'empty'}")
