"""LongLive through the server's API: generate, extend and rewind as queued jobs."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient

from arc_fabric_core.server.app import create_app
from arc_fabric_core.server.orchestrator import Settings

PARAMS = {"num_frames": 21, "height": 32, "width": 32, "prompt": "a fox in snow"}


def wait(client: TestClient, job_id: int) -> dict:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        job = client.get(f"/api/jobs/{job_id}").json()
        if job["state"] in ("succeeded", "failed", "cancelled"):
            assert job["state"] == "succeeded", job["error"]
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not finish")


def test_extend_and_rewind_are_jobs(tmp_path: Path) -> None:
    app = create_app(Settings(data_dir=tmp_path / "server", device="cpu", gpu_poll_seconds=0.5))
    with TestClient(app) as client:
        queued = client.post("/api/sessions", json={"model": "longlive", "variant": "tiny", "params": PARAMS})
        assert queued.status_code == 202, queued.json()
        first = wait(client, queued.json()["id"])
        sid = first["session_id"]

        early = client.post(f"/api/sessions/{sid}/rewind", json={"block": 5})
        assert early.status_code == 422 and early.json()["field"] == "block" and "0..1" in early.json()["message"]

        extended = wait(
            client, client.post(f"/api/sessions/{sid}/extend", json={"blocks": 1, "prompt": "a bird"}).json()["id"]
        )
        child = client.get(f"/api/sessions/{extended['session_id']}").json()
        assert child["parent"] == sid and child["operation"] == "extend" and child["status"] == "completed"
        assert child["doc"]["params"]["num_frames"] == 33 and child["doc"]["params"]["switch_frames"] == [6]
        assert client.get(extended["video"]).status_code == 200

        rewound = wait(
            client, client.post(f"/api/sessions/{sid}/rewind", json={"block": 1, "prompt": "a boat"}).json()["id"]
        )
        again = client.get(f"/api/sessions/{rewound['session_id']}").json()
        assert again["parent"] == sid and again["parent_step"] == 4 and again["doc"]["params"]["prompts"] == ["a boat"]
