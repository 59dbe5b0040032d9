"""Every size has an upper bound, refused before anything is queued or computed: through
the command line, the HTTP API and the engine; request bodies have a size limit; the
views of every job carry a payload in brief."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

import pytest
from pydantic import Field

from arc_fabric_core.contract.errors import InputError
from arc_fabric_core.contract.models import validate_params
from arc_fabric_core.contract.params import GenerationParams
from arc_fabric_core.engine.facade import Engine
from arc_fabric_core.runtime.devices import CpuProvider
from arc_fabric_core.runtime.model_cache import ModelCache
from arc_fabric_core.store.files import SessionStore

SMALL = {"num_frames": 4, "height": 16, "width": 16, "steps": 4}
MIB = 1024 * 1024


def _limited_memory() -> None:
    # Should the bound be missing, the run fails on this limit, not on the machine's memory.
    resource.setrlimit(resource.RLIMIT_AS, (6 * 1024**3, 6 * 1024**3))


@pytest.mark.skipif(
    "wan21" not in {ep.name for ep in metadata.entry_points(group="arc_fabric")},
    reason="the command line finds models through installed plugins",
)
@pytest.mark.parametrize(
    "command", [["+model=wan21"], ["jobs", "submit", "generate", "model=wan21"]], ids=["generate", "jobs-submit"]
)
def test_the_command_line_refuses_a_billion_steps_at_once(tmp_path: Path, command: list[str]) -> None:
    env = {k: v for k, v in os.environ.items() if not (k.startswith("ARC_") and k.endswith("_WEIGHTS"))}
    env.pop("ARC_FABRIC_STORE", None)
    env.pop("ARC_FABRIC_QUEUE", None)
    start = time.monotonic()
    res = subprocess.run(
        [sys.executable, "-m", "arc_fabric_core", *command, "steps=1000000000"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=_limited_memory,
    )
    assert res.returncode == 2, res.stderr[-2000:]
    assert res.stderr.startswith("error: steps: at most 1000 (") and res.stderr.count("\n") == 1, res.stderr
    assert "got 1000000000" in res.stderr
    assert time.monotonic() - start < 60
    assert not (tmp_path / "outputs" / "sessions").exists()  # no session was written
    if command[0] == "jobs":  # nothing was queued
        res = subprocess.run(
            [sys.executable, "-m", "arc_fabric_core", "jobs", "list", "--json"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert json.loads(res.stdout) == []


def test_a_plugin_redeclaring_a_shared_size_keeps_its_bound() -> None:
    class Loose(GenerationParams):
        steps: int = Field(8, ge=1)  # no bound of its own
        num_frames: int = Field(16, ge=1)

    with pytest.raises(InputError) as info:
        validate_params(Loose, {"steps": 10**9})
    assert info.value.field == "steps" and info.value.message.startswith("at most 1000 ("), info.value.message
    with pytest.raises(InputError) as info:
        validate_params(Loose, {"num_frames": 1_000_001})
    assert info.value.field == "num_frames" and "at most 10000" in info.value.message
    assert validate_params(Loose, {}).steps == 8


def test_a_long_prompt_is_refused_by_its_length_without_echoing_it() -> None:
    with pytest.raises(InputError) as info:
        validate_params(GenerationParams, {"prompt": "x" * 20_000})
    assert info.value.field == "prompt"
    assert info.value.message.startswith("at most 10240 characters (") and "got 20000 characters" in info.value.message
    assert "xxx" not in info.value.message
    assert GenerationParams.model_json_schema()["properties"]["prompt"]["maxLength"] == 10240
    assert GenerationParams.model_json_schema()["properties"]["steps"]["maximum"] == 1000


def test_a_size_no_device_could_hold_is_refused_when_planned(tmp_path: Path, toy_plugins) -> None:
    # A machine whose largest device is 64 MiB: the toy's sizes are within their bounds,
    # but 256 frames of 1024x1024 need gigabytes.
    cache = ModelCache(toy_plugins, provider=CpuProvider(budget=64 * MIB))
    engine = Engine(SessionStore(tmp_path / "store"), plugins=toy_plugins, device="cpu", cache=cache)
    with pytest.raises(InputError) as info:
        engine.create("toy", {"num_frames": 256, "height": 1024, "width": 1024})
    message = info.value.message
    assert info.value.field == "params"
    assert message.startswith("num_frames=256, height=1024, width=1024 need about 6.0 GiB"), message
    assert "largest device here has (cpu, " in message and "0.1 GiB" in message
    assert not any((tmp_path / "store").glob("*/session.json"))
    # The defaults, and what the tests run, fit.
    engine.create("toy", {})
    engine.create("toy", SMALL)


# ---------------------------------------------------------------- the HTTP API


@pytest.fixture
def client(tmp_path: Path, toy_plugins):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from arc_fabric_core.server.app import create_app
    from arc_fabric_core.server.orchestrator import Settings

    # No worker: what is queued stays queued.
    settings = Settings(data_dir=tmp_path / "server", device="cpu", gpu_poll_seconds=60)
    app = create_app(settings, plugins=toy_plugins, start_worker=False)
    with TestClient(app) as c:
        yield c


@pytest.mark.parametrize(
    ("params", "field", "limit"),
    [
        ({"steps": 1e9}, "steps", "at most 1000 ("),
        ({"height": 160000, "width": 160000}, "height", "at most 1024 ("),
        ({"num_frames": 1000001}, "num_frames", "at most 256 ("),
        ({"prompt": "x" * 20_000}, "prompt", "at most 10240 characters ("),
    ],
)
def test_the_api_refuses_an_oversized_generation_before_queueing(client, params, field, limit) -> None:
    res = client.post("/api/sessions", json={"model": "toy", "params": {**SMALL, **params}})
    assert res.status_code == 422, res.text
    assert res.json()["field"] == field and limit in res.json()["message"], res.json()
    assert len(res.text) < 1000  # the value is not echoed back
    assert client.get("/api/jobs").json() == []


def test_a_body_over_one_mib_is_refused_unread(client) -> None:
    body = {"model": "toy", "params": {**SMALL, "prompt": "x" * (2 * MIB)}}
    res = client.post("/api/sessions", json=body)
    assert res.status_code == 413
    assert res.json()["field"] is None and "at most 1 MiB" in res.json()["message"]
    # Without a Content-Length (chunked), the body is counted as it comes.
    chunks = (b"x" * (64 * 1024) for _ in range(40))
    res = client.post("/api/sessions", content=chunks, headers={"content-type": "application/json"})
    assert res.status_code == 413 and "at most 1 MiB" in res.json()["message"]
    assert client.get("/api/jobs").json() == []
    # Small bodies, bodiless requests and the event stream are as before.
    assert client.get("/api/health").status_code == 200
    assert client.post("/api/sessions", json={"model": "toy", "params": SMALL}).status_code == 202
    with client.websocket_connect("/api/events") as ws:
        assert ws.receive_json()["type"] == "snapshot"


def test_lists_and_events_carry_the_payload_in_brief(client) -> None:
    prompt = "a long prompt " * 500  # 7000 characters: within the bound
    with client.websocket_connect("/api/events") as ws:
        assert ws.receive_json()["type"] == "snapshot"
        res = client.post("/api/sessions", json={"model": "toy", "params": {**SMALL, "prompt": prompt}})
        assert res.status_code == 202, res.text
        job_id = res.json()["id"]
        event = next(e for e in (ws.receive_json() for _ in range(10)) if e["type"] == "job")
    brief = {"model": "toy", "params": {**SMALL, "prompt": prompt[:200] + "…"}}
    assert event["job"]["payload"] == brief and event["job"]["payload_summary"] is True
    (listed,) = client.get("/api/jobs").json()
    assert listed["payload"] == brief and listed["payload_summary"] is True
    with client.websocket_connect("/api/events") as ws:
        snapshot = ws.receive_json()
    (snapped,) = snapshot["jobs"]
    assert snapped["payload"] == brief
    assert len(json.dumps(snapshot["jobs"])) < 2000
    whole = client.get(f"/api/jobs/{job_id}").json()
    assert whole["payload"]["params"]["prompt"] == prompt and whole["payload_summary"] is False
