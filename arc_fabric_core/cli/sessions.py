"""`python -m arc_fabric_core sessions ...`: the session store from the command line.

    sessions list                         the lineage tree of every session
    sessions show ID                      params, progress, files, lineage
    sessions resume ID [--until K]        continue from the last good checkpoint
    sessions fork ID --step K [k=v ...]   branch at a checkpoint, with overrides
                     [--stage N=MODEL/VARIANT] [--hand-off MODEL/VARIANT]
    sessions edit ID --step K | --strength S [--rect x0,y0,x1,y1] [--mask-image PNG]
                     [--frames A:B] [k=v ...]
    sessions extend ID --blocks N [--prompt P]
                                          an autoregressive video made N blocks longer
    sessions rewind ID --block B [--prompt P] [k=v ...]
                                          remake an autoregressive video from block B on
    sessions decode ID [--frames A:B] [--step K]
                                          to mp4 (an unfinished session: its preview)
    sessions delete ID                    children keep the checkpoints they share
    sessions repair ID                    rebuild a damaged session.json from its checkpoints
    sessions gc [--dry-run]               remove files no session names

An ID may be abbreviated to any unique prefix or suffix of at least 4 characters. The store is --store,
else $ARC_FABRIC_STORE, else outputs/sessions (where generation writes too).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from arc_fabric_core.contract.errors import InputError
from arc_fabric_core.store.session import step_ranges


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m arc_fabric_core sessions",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument(
        "--store", type=Path, default=None, help="session store (default: $ARC_FABRIC_STORE or outputs/sessions)"
    )
    ap.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    ap.add_argument("--dtype", default="auto")
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("list", help="every session as a lineage tree")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("repair", help="rebuild a damaged session.json from its newest intact checkpoint")
    p.add_argument("id")

    p = sub.add_parser("show", help="one session: params, progress, files, lineage")
    p.add_argument("id")
    p.add_argument("--json", action="store_true")

    def running(p: argparse.ArgumentParser) -> None:
        p.add_argument("--out", type=Path, default=None, help="mp4 to write (default: <session dir>/video.mp4)")
        p.add_argument("--no-video", action="store_true", help="do not decode when finished")
        p.add_argument("--checkpoint-every", type=int, default=1, help="checkpoint every k steps (0 = none)")
        p.add_argument("--checkpoint-keep", type=int, default=0, help="newest n checkpoints to keep (0 = all)")

    # An operation's subcommand: its own arguments, then what every run takes.
    for op in _operations().values():
        p = sub.add_parser(op.name, help=op.cli_help or op.summary)
        op.cli_arguments(p)
        if op.runs:
            created = op.cli_created()
            if created is not None:
                help_text = f"create the {created} only; run it later with resume"
                p.add_argument("--no-run", action="store_true", help=help_text)
            running(p)

    p = sub.add_parser("delete", help="delete a session; its children keep what they share")
    p.add_argument("id")

    p = sub.add_parser("gc", help="remove files that no session names")
    p.add_argument("--dry-run", action="store_true")
    return ap


def main(argv: list[str]) -> None:
    from arc_fabric_core.cli.common import run_subcommand

    run_subcommand(_parser(), argv, "overrides", _dispatch, "interrupted; the session is paused at its last checkpoint")


# The subcommands of the store itself; every other one is a registered operation's.
COMMANDS = frozenset({"list", "show", "repair", "delete", "gc"})


def _operations() -> dict[str, Any]:
    """The registered operations with a subcommand: those on a stored session (generate
    is the main command), less those spelt through another's flags (hand-off)."""
    from arc_fabric_core.dispatch.plugins import get_plugins

    ops = get_plugins().operations().values()
    return {op.name: op for op in ops if op.on_session and op.cli_subcommand and op.name not in COMMANDS}


def _dispatch(args: argparse.Namespace) -> None:
    from arc_fabric_core.store.files import SessionStore, default_store_dir

    store = SessionStore(args.store if args.store is not None else default_store_dir())
    command = args.command
    if command == "list":
        return _list(store, args)
    if command == "gc":
        return _gc(store, args)
    session_id = resolve_id(store, args.id)
    if command == "show":
        return _show(store, session_id, args)
    if command == "delete":
        freed = store.delete(session_id)
        print(f"deleted {session_id} ({_size(freed)} freed)")
        return None
    if command == "repair":
        doc, notes = store.repair(session_id)
        print(f"repair {session_id}: {'; '.join(notes)}; status {doc.status.value} at step {doc.step_index}")
        return None
    op = _operations()[command]
    out = getattr(args, "out", None)
    check_out(out)  # before any compute: a run's video goes there at its end
    engine = _engine(store, args)
    plan = op.cli_plan(engine, args, session_id)
    session = op.create(engine, plan)
    if not op.runs:  # carried out as its job is (a decode): no loop to run
        _say(op.cli_done(session, session_id, _execute(engine, op, plan, session, out)))
        return None
    _say(op.cli_done(session, session_id))
    if getattr(args, "no_run", False):
        print(f"created {session.id}; run it with: sessions resume {session.id}")
        return None
    _run(engine, session, getattr(args, "until", None))
    if session.done and not args.no_video:
        _decode(engine, session.id, out)
    return None


# Fewer characters would match by accident (one digit is the suffix of a tenth of all ids).
MIN_ID_PART = 4


def resolve_id(store: Any, given: str) -> str:
    """An exact id, or a unique prefix or suffix of one (at least ``MIN_ID_PART`` characters)."""
    if given and "/" not in given and given not in (".", "..") and store.exists(given):
        return given
    if len(given) < MIN_ID_PART:
        raise InputError("id", f"{given!r} is too short: give a session id or at least {MIN_ID_PART} characters of one")
    ids = store.list_ids()
    matches = [i for i in ids if i.startswith(given) or i.endswith(given)]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        latest = ", ".join(ids[-3:]) or "none"
        raise InputError("id", f"no session {given!r} in {store.root} (latest: {latest})")
    raise InputError("id", f"{given!r} matches {len(matches)} sessions: {', '.join(matches[:5])}; give more of it")


def _engine(store: Any, args: argparse.Namespace) -> Any:
    from arc_fabric_core.jobs.runtime_setup import RuntimeSettings, build_engine

    settings = RuntimeSettings(
        store_dir=store.root,
        device=args.device,
        dtype=args.dtype,
        checkpoint_every=getattr(args, "checkpoint_every", 1),
        checkpoint_keep=getattr(args, "checkpoint_keep", 0),
    )
    return build_engine(settings, store=store)


def _run(engine: Any, session: Any, until: int | None) -> None:
    from arc_fabric_core.cli.common import run_with_progress

    run_with_progress(engine, session, until)
    print(f"session {session.id}: {session.doc.status.value} at step {session.step_index}/{session.doc.total_steps}")


def check_out(out: Path | None) -> None:
    """Refuse an ``--out`` no video can be written at, before anything runs or loads."""
    from arc_fabric_core.media.video import destination_problem

    problem = destination_problem(out) if out is not None else None
    if problem is not None:
        raise InputError("--out", problem)


def _execute(engine: Any, op: Any, plan: Any, session: Any, out: Path | None) -> Any:
    """An operation that runs no loop (a decode), carried out as its job is: its own
    ``execute`` (its log lines are the job's; the command says its own line)."""
    from arc_fabric_core.contract.errors import OutputError

    try:
        return op.execute(engine, plan, session, lambda line: None)
    except OutputError as exc:  # the session is untouched: doing it again writes the file
        again = f"sessions {op.name} {session.id}" + (f" --out {out}" if out is not None else "")
        raise OutputError(
            exc.path, f"{exc.reason}; the session is kept: `{again}` writes it again", exc.errno
        ) from None


def _decode(engine: Any, session_id: str, out: Path | None) -> None:
    """A finished run's video, at ``out`` (default: its folder's video.mp4)."""
    decode = engine.operation("decode")
    plan = decode.plan(engine, session_id, path=out)
    session = decode.create(engine, plan)
    _say(decode.cli_done(session, session_id, _execute(engine, decode, plan, session, out)))


def _say(line: str | None) -> None:
    if line is not None:
        print(line)


def _list(store: Any, args: argparse.Namespace) -> None:
    from arc_fabric_core.store.lineage import render_tree

    docs, damaged = store.scan()
    if args.json:
        listed = [{**d.model_dump(mode="json"), "status": store.status_of(d)} for d in docs]
        listed += [{"id": d.session_id, "status": "damaged", "file": d.path, "error": d.reason} for d in damaged]
        print(json.dumps(listed, indent=2))
        return
    if not docs and not damaged:
        print(f"no sessions in {store.root}")
        return
    lines = render_tree(docs, status=store.status_of)
    lines += [f"{d.session_id}  damaged: {d.path}: {d.reason} (sessions repair {d.session_id})" for d in damaged]
    print("\n".join(lines))


def _show(store: Any, session_id: str, args: argparse.Namespace) -> None:
    from arc_fabric_core.store.files import session_bytes
    from arc_fabric_core.store.lineage import ancestors, children_of, edge

    docs = store.load_all()
    by_id = {d.id: d for d in docs}
    doc = by_id.get(session_id) or store.load_doc(session_id)
    kids = [d.id for d in children_of(docs).get(doc.id, [])]
    chain = ancestors(doc, by_id)
    total, own = session_bytes(store, doc)
    if args.json:
        data = doc.model_dump(mode="json")
        data["status"] = store.status_of(doc)
        data["lineage"] = {"ancestors": chain, "children": kids}
        data["bytes"] = {"total": total, "own": own}
        print(json.dumps(data, indent=2))
        return
    weights = f"  weights {doc.model.weights}" if doc.model.weights else ""
    error = f"  error: {doc.error}" if doc.error else ""
    parent = ""
    if doc.parent:
        parent = f" of {doc.parent}" + ("" if doc.parent in by_id else " (deleted)")
    lines = [
        f"session   {doc.id}  ({store.session_dir(doc.id)})",
        f"model     {doc.model.name}/{doc.model.variant}{weights}",
        f"status    {store.status_of(doc)}, step {doc.step_index}/{doc.total_steps}{error}",
        f"created   {doc.created_at}   updated {doc.updated_at}",
        f"origin    {edge(doc)}{parent}",
        f"lineage   {' > '.join([*chain, doc.id])}",
        f"children  {', '.join(kids) or 'none'}",
        f"checkpoints at steps {step_ranges([c.step for c in doc.checkpoints]) or 'none'}",
        *_plan_lines(doc),
        f"disk      {_size(total)} ({_size(own)} not shared with other sessions)",
        "params",
    ]
    lines += [f"  {k} = {v!r}" for k, v in doc.params.items()]
    for name, record in doc.inputs.items():
        shape = ", ".join(map(str, store.tensor_shape(doc.id, record, name)))
        lines.append(f"input     {name}: shape ({shape}), {record.file}")
    if doc.edit is not None:
        e = doc.edit
        lines.append(
            f"edit      from step {e.start_step} of the {e.source} latents (step {e.source_step}); "
            f"mask rect={e.rect} frames={e.frames} image={e.mask_image} covers {e.coverage:.0%}"
        )
    print("\n".join(lines))


def _plan_lines(doc: Any) -> list[str]:
    """Passes and hybrid stages, when the session has them."""
    lines = []
    if doc.passes:
        starts = [sum(doc.passes[:i]) for i in range(len(doc.passes))]
        lines.append("passes    " + ", ".join(f"{s}..{s + n}" for s, n in zip(starts, doc.passes, strict=True)))
    begin = 0
    for i, st in enumerate(doc.stages):
        end = st.end_step if st.end_step is not None else "?"
        guidance = f", guidance {st.guidance}" if st.guidance is not None else ""
        name = f" ({doc.schedule_name})" if i == 0 and doc.schedule_name else ""
        lines.append(f"stage {i}   {st.model.name}/{st.model.variant} steps {begin}..{end}{guidance}{name}")
        begin = st.end_step if st.end_step is not None else begin
    return lines


def _gc(store: Any, args: argparse.Namespace) -> None:
    garbage = store.gc(dry_run=args.dry_run)
    verb = "would remove" if args.dry_run else "removed"
    for g in garbage:
        print(f"{verb} {g.session}/{g.file} ({g.reason}, {_size(g.bytes)})")
    print(f"{verb} {len(garbage)} files, {_size(sum(g.bytes for g in garbage))}")


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


if __name__ == "__main__":
    main(sys.argv[1:])
