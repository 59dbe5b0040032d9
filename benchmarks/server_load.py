"""The server under load: N clients each listen on the event stream and submit jobs at
once, against the toy model; a prober times API calls while jobs run.

Reports: jobs submitted / finished / lost, 5xx count, whether jobs started in queue
order, how many clients saw all their jobs finish on their WebSocket, and API latency
(p50/p99) of GET /api/jobs/{id} and POST /api/sessions while the queue is busy — compute
runs on the worker thread, so the event loop must stay quick.

    python benchmarks/server_load.py --clients 20 --jobs 2 --steps 200
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def toy_plugins() -> Any:
    sys.path.insert(0, str(ROOT / "examples" / "arc_toy"))
    from arc_fabric_core.dispatch.plugins import Plugins
    from arc_toy import plugin

    plugins = Plugins(load_entrypoints=False)
    plugins.register(plugin, name="toy")
    return plugins


def run_load(base: str, clients: int, jobs_each: int, params: dict[str, Any]) -> dict[str, Any]:
    """Drive the server at ``base``; returns the figures (also what the load test asserts on)."""
    import httpx
    from websockets.sync.client import connect

    ws_url = base.replace("http://", "ws://") + "/api/events"
    submitted: dict[int, int] = {}  # job id -> client
    seen_done: dict[int, set[int]] = {c: set() for c in range(clients)}
    statuses: list[int] = []
    latencies: dict[str, list[float]] = {"GET /api/jobs/{id}": [], "POST /api/sessions": []}
    lock = threading.Lock()
    ready = threading.Barrier(clients + 1)

    def client(n: int) -> None:
        with connect(ws_url, open_timeout=30, max_size=2**24) as ws, httpx.Client(base_url=base, timeout=60) as http:
            assert json.loads(ws.recv(timeout=30))["type"] == "snapshot"
            ready.wait()
            mine = set()
            for _ in range(jobs_each):
                t0 = time.perf_counter()
                r = http.post("/api/sessions", json={"model": "toy", "params": params})
                with lock:
                    latencies["POST /api/sessions"].append(time.perf_counter() - t0)
                    statuses.append(r.status_code)
                if r.status_code == 202:
                    job_id = r.json()["id"]
                    mine.add(job_id)
                    with lock:
                        submitted[job_id] = n
            deadline = time.monotonic() + 600
            while not mine <= seen_done[n] and time.monotonic() < deadline:
                event = json.loads(ws.recv(timeout=600))
                if event["type"] == "job" and event["job"]["state"] in ("succeeded", "failed", "cancelled"):
                    seen_done[n].add(event["job"]["id"])

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    # The prober has a process of its own: in this one it would time the 20 clients'
    # JSON parsing (one GIL) as much as the server.
    context = multiprocessing.get_context("spawn")
    probed, stop_file = context.Queue(), _stop_file()
    probe = context.Process(target=probe_jobs, args=(base, clients * jobs_each, probed, stop_file), daemon=True)
    start = time.perf_counter()
    for t in threads:
        t.start()
    ready.wait()
    probe.start()
    for t in threads:
        t.join()
    stop_file.touch()
    got = probed.get(timeout=60)
    probe.join(30)
    latencies["GET /api/jobs/{id}"] = got["latencies"]
    statuses += got["statuses"]
    wall = time.perf_counter() - start
    jobs = httpx.get(f"{base}/api/jobs", timeout=60).json()
    by_id = {j["id"]: j for j in jobs}
    started = sorted((j for j in jobs if j["started_at"]), key=lambda j: j["started_at"])
    return {
        "clients": clients,
        "submitted": len(submitted),
        "succeeded": sum(by_id[i]["state"] == "succeeded" for i in submitted if i in by_id),
        "lost": sorted(i for i in submitted if i not in by_id or by_id[i]["state"] != "succeeded"),
        "errors": {i: by_id[i]["error"] for i in submitted if i in by_id and by_id[i]["error"]},
        "server_errors": sum(s >= 500 for s in statuses),
        "in_queue_order": [j["id"] for j in started] == sorted(j["id"] for j in started),
        "clients_saw_all_their_jobs": sum(
            {i for i, c in submitted.items() if c == n} <= seen_done[n] for n in range(clients)
        ),
        "wall_seconds": round(wall, 2),
        "latency_ms": {
            name: {
                "n": len(v),
                "p50": round(statistics.median(v) * 1000, 1),
                "p99": round(sorted(v)[max(0, int(len(v) * 0.99) - 1)] * 1000, 1),
            }
            for name, v in latencies.items()
            if v
        },
    }


def _stop_file() -> Path:
    return Path(tempfile.mkdtemp(prefix="arc-probe-")) / "stop"


def probe_jobs(base: str, job_id: int, out: Any, stop: Path) -> None:
    """Time GET /api/jobs/{job_id} every 10 ms until ``stop`` exists (the last job of
    the load: queued most of the run, so each answer computes its queue position)."""
    import httpx

    latencies: list[float] = []
    statuses: list[int] = []
    with httpx.Client(base_url=base, timeout=60) as http:
        while not stop.exists():
            t0 = time.perf_counter()
            r = http.get(f"/api/jobs/{job_id}", params={"logs": "false"})
            if r.status_code == 404:  # not submitted yet
                time.sleep(0.01)
                continue
            latencies.append(time.perf_counter() - t0)
            statuses.append(r.status_code)
            time.sleep(0.01)
    out.put({"latencies": latencies, "statuses": statuses})


def serve(port: int, data: Path, executor: str) -> None:
    """The server alone in this process (the load generator must not share its GIL)."""
    import uvicorn

    from arc_fabric_core.server import UVICORN_OPTIONS
    from arc_fabric_core.server.app import create_app
    from arc_fabric_core.server.orchestrator import Settings

    settings = Settings(
        data_dir=data, device="cpu", gpu_poll_seconds=1.0, executor=executor, worker_plugins=("arc_toy.plugin",)
    )
    toy = str(ROOT / "examples" / "arc_toy")  # where subprocess workers find the toy plugin
    os.environ["PYTHONPATH"] = os.pathsep.join([toy, os.environ.get("PYTHONPATH", "")])
    app = create_app(settings, plugins=toy_plugins())
    uvicorn.run(app, host="127.0.0.1", port=port, **UVICORN_OPTIONS)  # type: ignore[arg-type]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, default=20)
    ap.add_argument("--jobs", type=int, default=2, help="jobs per client")
    ap.add_argument("--steps", type=int, default=200, help="toy steps per job (how long each job computes)")
    ap.add_argument("--executor", choices=["inprocess", "subprocess"], default="inprocess")
    ap.add_argument("--serve-port", type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--serve-data", type=Path, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve_port is not None:
        serve(args.serve_port, args.serve_data, args.executor)
        return

    import subprocess

    import httpx

    from arc_fabric_core.testing.server import free_port

    params = {"num_frames": 8, "height": 64, "width": 64, "steps": args.steps}
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        serve_args = ["--serve-port", str(port), "--serve-data", tmp]
        command = [sys.executable, __file__, "--executor", args.executor, *serve_args]
        server = subprocess.Popen(command)
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    httpx.get(f"{base}/api/health", timeout=2)
                    break
                except httpx.TransportError:
                    if server.poll() is not None or time.monotonic() > deadline:
                        raise SystemExit("the server did not start") from None
                    time.sleep(0.2)
            figures = run_load(base, args.clients, args.jobs, params)
        finally:
            server.terminate()
            server.wait(60)
    print(json.dumps({"executor": args.executor, "steps": args.steps, **figures}, indent=2))


if __name__ == "__main__":
    main()
