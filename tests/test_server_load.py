"""20 clients at once, each on the event stream, each submitting jobs: none is lost, no
5xx, the queue runs in order, every client hears its jobs finish. (Latency figures come
from benchmarks/server_load.py, not from a timed test.)"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("websockets")

from arc_fabric_core.server.app import create_app
from arc_fabric_core.server.orchestrator import Settings
from arc_fabric_core.testing.server import running_server

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from server_load import run_load


@pytest.mark.slow
def test_twenty_clients_lose_nothing(tmp_path: Path, toy_plugins) -> None:
    app = create_app(Settings(data_dir=tmp_path, device="cpu", gpu_poll_seconds=0.5), plugins=toy_plugins)
    with running_server(app) as base:
        figures = run_load(base, clients=20, jobs_each=2, params={"num_frames": 2, "height": 8, "width": 8, "steps": 3})
    assert figures["submitted"] == 40 and figures["succeeded"] == 40 and figures["lost"] == []
    assert figures["server_errors"] == 0
    assert figures["in_queue_order"] is True
    assert figures["clients_saw_all_their_jobs"] == 20
