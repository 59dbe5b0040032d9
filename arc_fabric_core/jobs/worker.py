"""A worker process: runs jobs for an orchestrator with the plugins of its own env.

    python -m arc_fabric_core.jobs.worker --store DIR [--device auto] [--dtype auto]

Started by the ``subprocess`` executor with the interpreter of a plugin's env. It
listens on 127.0.0.1 (a free port, printed as ``ARC_WORKER_PORT <port>``), accepts one
orchestrator that knows the token from ``ARC_WORKER_TOKEN``, and runs one job at a time
with its own engine and model cache: models stay warm across jobs, latents never leave
this process, sessions are written to the shared store.
"""

from __future__ import annotations

import argparse
import dataclasses
import hmac
import logging
import os
import socket
import sys
import threading
import traceback
from typing import Any

from arc_fabric_core.jobs.executors import Lines, Progress, error_event, run_job, send
from arc_fabric_core.runtime.model_cache import CacheEvent

log = logging.getLogger("arc_fabric.worker")


class Worker:
    def __init__(
        self,
        store: str,
        device: str,
        dtype: str,
        model_memory: str | None = None,
        cpu_tier: str | None = None,
        extra_plugins: list[str] | None = None,
    ) -> None:
        from arc_fabric_core.dispatch.plugins import get_plugins
        from arc_fabric_core.jobs.runtime_setup import RuntimeSettings, build_engine
        from arc_fabric_core.runtime.devices import parse_bytes

        plugins = get_plugins()
        plugins.model_names()  # installed plugins first: a module given again is not registered twice
        for module in extra_plugins or []:  # a plugin module not installed (a checkout, a notebook's)
            import importlib

            plugin = importlib.import_module(module)
            if not plugins.pm.is_registered(plugin):
                plugins.register(plugin, name=module)
        settings = RuntimeSettings(
            store_dir=store,
            device=device,
            dtype=dtype,
            model_memory=parse_bytes(model_memory, "model_memory") if model_memory else None,
            cpu_tier=parse_bytes(cpu_tier, "cpu_tier") if cpu_tier else 0,
        )
        # One engine (and its cache) for the worker's life: models stay warm across its jobs.
        self.engine = build_engine(settings, plugins)
        self.cancel = threading.Event()
        self.busy = False  # a job runs (guarded by the socket's write lock)

    def hello(self) -> dict[str, Any]:
        import torch

        return {
            "ok": True,
            "pid": os.getpid(),
            "python": sys.executable,
            "torch": torch.__version__,
            "models": self.engine.plugins.model_names(),
        }

    def serve(self, conn: socket.socket) -> None:
        lines = Lines(conn)
        hello = lines.read()
        token = os.environ.get("ARC_WORKER_TOKEN", "")
        if not hello or hello.get("op") != "hello" or not hmac.compare_digest(str(hello.get("token", "")), token):
            send(conn, {"ok": False, "error": "bad token"})
            return
        send(conn, self.hello())
        lock = threading.Lock()  # the job thread and this reader both write to the socket
        job: threading.Thread | None = None
        while True:
            message = lines.read()
            if message is None or message.get("op") == "shutdown":
                self.cancel.set()
                if job is not None:
                    job.join()
                return
            op = message.get("op")
            if op == "cancel":
                self.cancel.set()
            elif op == "run":
                with lock:
                    if self.busy:
                        send(conn, {"event": "error", "error": "this worker is already running a job"})
                        continue
                    self.busy = True
                self.cancel.clear()
                job = threading.Thread(target=self._run, args=(conn, lock, message), daemon=True)
                job.start()

    def _run(self, conn: socket.socket, lock: threading.Lock, message: dict[str, Any]) -> None:
        def tell(event: dict[str, Any], last: bool = False) -> None:
            with lock:
                if last:  # free before the orchestrator hears the end: it may send the next job at once
                    self.busy = False
                send(conn, event)

        def on_step(p: Progress) -> None:
            tell({"event": "step", **p.__dict__})

        def on_cache(event: CacheEvent) -> None:
            states = [
                {"label": s.label, "state": s.state.value, "device": s.device, "bytes": s.bytes}
                for s in self.engine.cache.states()
            ]
            tell({"event": "model", **dataclasses.asdict(event), "states": states})

        unsubscribe = self.engine.cache.subscribe(on_cache)
        try:
            outcome = run_job(
                self.engine,
                message["kind"],
                message["payload"],
                on_session=lambda sid: tell({"event": "session", "session_id": sid}),
                stop=self.cancel.is_set,
                listeners=[on_step],
                previews=bool(message.get("previews")),
                video=bool(message.get("video")),
                on_log=lambda line: tell({"event": "log", "line": line}),
            )
        except Exception as exc:
            unsubscribe()  # before the end is told: the next job may start at once
            log.debug("job failed:\n%s", traceback.format_exc())
            tell(error_event(exc), last=True)
            return
        unsubscribe()
        tell({"event": "done", **outcome.__dict__}, last=True)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m arc_fabric_core.jobs.worker", description=__doc__)
    ap.add_argument("--store", required=True)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--dtype", default="auto")
    ap.add_argument("--model-memory", default=None, help="cap on warm models per device, e.g. 40G")
    ap.add_argument("--cpu-tier", default=None, help="RAM for evicted GPU models, e.g. 64G (default: none)")
    ap.add_argument(
        "--plugin", action="append", default=[], metavar="MODULE", help="also register this module as a plugin"
    )
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[worker %(process)d] %(message)s", stream=sys.stderr)
    worker = Worker(args.store, args.device, args.dtype, args.model_memory, args.cpu_tier, args.plugin)
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    print(f"ARC_WORKER_PORT {server.getsockname()[1]}", flush=True)
    conn, _ = server.accept()
    server.close()  # one orchestrator per worker
    with conn:
        worker.serve(conn)


if __name__ == "__main__":
    main()
