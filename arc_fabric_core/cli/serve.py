"""`python -m arc_fabric_core serve`: the API, the event stream and the web UI in one process.

    serve [--host 127.0.0.1] [--port 8188] [--data outputs/server] [--device auto]
          [--executor inprocess|subprocess] [--cancel-grace 10] [--model-memory 40G] [--cpu-tier 64G] [--token T]

Bound to 127.0.0.1 by default. Any other address needs a bearer token (--token or
$ARC_FABRIC_TOKEN): the server refuses to start without one.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
from pathlib import Path

from arc_fabric_core.contract.errors import InputError


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m arc_fabric_core serve",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8188)
    ap.add_argument("--data", type=Path, default=Path("outputs/server"), help="sessions, queue and videos")
    ap.add_argument("--device", default="auto")
    from arc_fabric_core.jobs.runtime_setup import executor_names

    ap.add_argument("--executor", choices=executor_names(), default="inprocess")
    ap.add_argument(
        "--cancel-grace",
        type=float,
        default=10.0,
        help="subprocess executor: seconds a cancelled job has to reach its next step before its worker is ended",
    )
    ap.add_argument("--model-memory", default=None, help="cap on warm models per device, e.g. 40G")
    ap.add_argument("--cpu-tier", default=None, help="RAM that keeps evicted GPU models warm, e.g. 64G")
    ap.add_argument("--token", default=None, help="bearer token (default: $ARC_FABRIC_TOKEN)")
    return ap


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def main(argv: list[str]) -> None:
    from arc_fabric_core.cli.common import run_subcommand

    run_subcommand(_parser(), argv, "", _serve, "server stopped")


def _serve(args: argparse.Namespace) -> None:
    import uvicorn

    from arc_fabric_core.runtime.devices import parse_bytes
    from arc_fabric_core.server import UVICORN_OPTIONS
    from arc_fabric_core.server.app import create_app
    from arc_fabric_core.server.orchestrator import Settings

    token = args.token or os.environ.get("ARC_FABRIC_TOKEN") or None
    if not is_loopback(args.host) and not token:
        raise InputError(
            "--host",
            f"{args.host} is reachable from other machines: give a bearer token (--token or $ARC_FABRIC_TOKEN), "
            "or bind 127.0.0.1",
        )
    if not 0 < args.port < 65536:
        raise InputError("--port", f"must be in 1..65535, got {args.port}")
    if not args.cancel_grace > 0:
        raise InputError("--cancel-grace", f"must be more than 0 seconds, got {args.cancel_grace:g}")
    settings = Settings(
        data_dir=args.data,
        device=args.device,
        executor=args.executor,
        cancel_grace=args.cancel_grace,
        model_memory=parse_bytes(args.model_memory, "--model-memory") if args.model_memory else None,
        cpu_tier=parse_bytes(args.cpu_tier, "--cpu-tier") if args.cpu_tier else 0,
    )
    app = create_app(settings, token=token)
    print(f"Arc Fabric on http://{args.host}:{args.port}  (API docs: /docs, events: ws /api/events)", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, **UVICORN_OPTIONS)  # type: ignore[arg-type]
