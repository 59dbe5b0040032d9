"""The server's REST API and event stream, through HTTP, on the toy model."""

from __future__ import annotations

import base64
import io
import logging
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi")
from blocks_plugin import Blocks  # tests/, on the path too
from fastapi.testclient import TestClient
from PIL import Image
from starlette.websockets import WebSocketDisconnect

from arc_fabric_core.contract.errors import ArcFabricError, InputError
from arc_fabric_core.contract.hookspecs import hookimpl
from arc_fabric_core.contract.models import ModelRef
from arc_fabric_core.engine.edit_mask import EditMask
from arc_fabric_core.server.app import create_app
from arc_fabric_core.server.orchestrator import Settings
from arc_toy import plugin as toy  # on the path: conftest puts it there

PARAMS = {"num_frames": 4, "height": 16, "width": 16, "steps": 4, "prompt": "bands"}


@pytest.fixture
def client(tmp_path: Path, toy_plugins):
    app = create_app(Settings(data_dir=tmp_path / "server", device="cpu", gpu_poll_seconds=0.2), plugins=toy_plugins)
    with TestClient(app) as c:
        yield c


def wait_job(client: TestClient, job_id: int, states=("succeeded", "failed", "cancelled"), timeout=60) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/api/jobs/{job_id}").json()
        if job["state"] in states:
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} still {job['state']}")


def test_shipped_schedules_are_listed(client: TestClient) -> None:
    assert "hybrid_wan_1.3b_14b" in client.get("/api/schedules").json()


def test_models_carry_their_schema_defaults_and_state(client: TestClient) -> None:
    models = client.get("/api/models").json()
    assert [m["name"] for m in models] == ["toy"]
    toy = client.get("/api/models/toy").json()
    schema = toy["params_schema"] if "params_schema" in toy else toy["params"]
    assert "properties" in schema and "steps" in schema["properties"]
    assert toy["states"] == [{"variant": "default", "state": "cold", "device": None}]
    missing = client.get("/api/models/nope")
    assert missing.status_code == 422 and missing.json()["field"] == "model" and "toy" in missing.json()["message"]


def test_submit_poll_result_then_fork(client: TestClient) -> None:
    queued = client.post("/api/sessions", json={"model": "toy", "params": PARAMS})
    assert queued.status_code == 202
    job = queued.json()
    assert job["state"] in ("queued", "running", "succeeded") and job["kind"] == "generate"
    done = wait_job(client, job["id"])
    assert done["state"] == "succeeded", done["error"]
    assert done["progress"]["step"] == 4 and done["progress"]["total"] == 4
    # The job's log narrates it: time-stamped lines, in order.
    said = [line.split(" ", 1)[1] for line in done["logs"]]
    assert said[:4] == [
        "queued (generate, priority 0)",
        "started",
        f"session {done['session_id']}: generate with toy/default, steps 0→4 of 4",
        "loading toy/default onto cpu",
    ]
    assert said[4].startswith("loaded toy/default on cpu in ")
    assert said[5:7] == ["decoding the video", said[6]] and said[6].startswith("wrote video.mp4 (")
    assert said[-1] == "succeeded"
    assert done["video"] == f"/files/videos/{done['session_id']}.mp4"
    video = client.get(done["video"])
    assert video.status_code == 200 and video.headers["content-type"] == "video/mp4" and len(video.content) > 100
    # The model is warm now, on the CPU.
    assert client.get("/api/models/toy").json()["states"][0] == {"variant": "default", "state": "warm", "device": "cpu"}
    assert client.get("/api/gpus").json()[0]["models"] == ["toy/default"]

    session = client.get(f"/api/sessions/{done['session_id']}").json()
    assert session["status"] == "completed" and session["checkpoint_steps"][-1] == 4
    fork = client.post(f"/api/sessions/{done['session_id']}/fork", json={"step": 2, "overrides": {"prompt": "waves"}})
    assert fork.status_code == 202
    forked = wait_job(client, fork.json()["id"])
    assert forked["state"] == "succeeded", forked["error"]
    child = client.get(f"/api/sessions/{forked['session_id']}").json()
    assert child["parent"] == done["session_id"] and child["ancestors"] == [done["session_id"]]
    assert client.get(f"/api/sessions/{done['session_id']}").json()["children"] == [forked["session_id"]]
    listing = client.get("/api/sessions").json()
    assert [s["id"] for s in listing] == [forked["session_id"], done["session_id"]]

    preview = client.post(f"/api/sessions/{done['session_id']}/decode", json={"step": 2})
    assert preview.status_code == 200 and preview.json()["video"].endswith("-step2.mp4")
    assert preview.json() == {"session": done["session_id"], "step": 2, "video": preview.json()["video"]}
    assert client.get(preview.json()["video"]).status_code == 200
    # A decode job made it, in the queue like any other, and its result is the preview.
    (decode,) = [j for j in client.get("/api/jobs").json() if j["kind"] == "decode"]
    assert decode["state"] == "succeeded" and decode["payload"] == {"session": done["session_id"], "step": 2}
    assert decode["session_id"] == done["session_id"] and decode["video"] == preview.json()["video"]

    deleted = client.delete(f"/api/sessions/{forked['session_id']}")
    assert deleted.status_code == 200
    assert client.get(f"/api/sessions/{forked['session_id']}").status_code == 404


def test_with_worker_processes_the_models_show_where_the_workers_hold_them(
    tmp_path: Path, toy_plugins, monkeypatch: pytest.MonkeyPatch
) -> None:
    toy = Path(__file__).resolve().parents[1] / "examples" / "arc_toy"
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(toy), os.environ.get("PYTHONPATH", "")]))
    settings = Settings(
        data_dir=tmp_path / "server", device="cpu", executor="subprocess", worker_plugins=("arc_toy.plugin",)
    )
    with TestClient(create_app(settings, plugins=toy_plugins)) as client:
        job = client.post("/api/sessions", json={"model": "toy", "params": PARAMS}).json()
        done = wait_job(client, job["id"])
        assert done["state"] == "succeeded", done["error"]
        # The server's own cache never loaded it: the worker's did, and says so.
        assert client.get("/api/models/toy").json()["states"][0] == {
            "variant": "default",
            "state": "warm",
            "device": "cpu",
        }
        assert client.get("/api/gpus").json()[0]["models"] == ["toy/default"]
        said = [line.split(" ", 1)[1] for line in done["logs"]]
        assert any(line.startswith("loaded toy/default on cpu in ") for line in said), said
        with client.websocket_connect("/api/events") as ws:
            recent = ws.receive_json()["model_events"]
        assert [(e["kind"], e["label"]) for e in recent] == [("loading", "toy/default"), ("load", "toy/default")]
        # A decode is a job too: the worker holding the model decodes, never the server.
        preview = client.post(f"/api/sessions/{done['session_id']}/decode", json={"step": 2})
        assert preview.status_code == 200, preview.text
        assert client.get(preview.json()["video"]).status_code == 200
        (decode,) = [j for j in client.get("/api/jobs").json() if j["kind"] == "decode"]
        assert decode["state"] == "succeeded" and decode["video"] == preview.json()["video"]
        orchestrator = client.app.state.orchestrator
        assert all(s.state == "cold" and s.loads == 0 for s in orchestrator.cache.states())  # never loaded here


def test_warnings_said_while_a_job_runs_reach_its_log(tmp_path: Path, toy_plugins) -> None:
    class Grumbles:
        @hookimpl(wrapper=True)
        def arc_denoise_step(self) -> Any:
            logging.getLogger("grumbles").warning("step looks odd\n(details)")
            logging.getLogger("grumbles").info("not worth a line")
            return (yield)

    toy_plugins.register(Grumbles(), name="grumbles")
    app = create_app(Settings(data_dir=tmp_path / "server", device="cpu"), plugins=toy_plugins)
    with TestClient(app) as client:
        job = client.post("/api/sessions", json={"model": "toy", "params": PARAMS}).json()
        done = wait_job(client, job["id"])
        said = [line.split(" ", 1)[1] for line in done["logs"]]
        assert said.count("warning: step looks odd [grumbles]") == 4  # one per step, first line only
        assert not any("not worth" in line for line in said)
        # Outside a job nothing is captured: the handler is gone.
        logging.getLogger("grumbles").warning("after the job")
        again = client.get(f"/api/jobs/{job['id']}").json()
        assert not any("after the job" in line for line in again["logs"])


def test_queue_position_priority_cancel_and_pause(client: TestClient) -> None:
    assert client.post("/api/queue/pause").json() == {"paused": True}
    low = client.post("/api/sessions", json={"model": "toy", "params": PARAMS}).json()
    high = client.post("/api/sessions", json={"model": "toy", "params": PARAMS, "priority": 5}).json()
    gone = client.post("/api/sessions", json={"model": "toy", "params": PARAMS}).json()
    assert client.get(f"/api/jobs/{high['id']}").json()["position"] == 0
    assert client.get(f"/api/jobs/{low['id']}").json()["position"] == 1
    cancelled = client.post(f"/api/jobs/{gone['id']}/cancel").json()
    assert cancelled["state"] == "cancelled" and cancelled["position"] is None
    again = client.post(f"/api/jobs/{gone['id']}/cancel")
    assert again.status_code == 422 and again.json()["field"] == "job"
    client.post("/api/queue/unpause")
    first, second = wait_job(client, high["id"]), wait_job(client, low["id"])
    assert first["state"] == second["state"] == "succeeded"
    assert first["finished_at"] <= second["started_at"]  # priority first


def test_bad_input_is_a_4xx_naming_the_field(client: TestClient) -> None:
    cases = [
        (client.post("/api/sessions", json={"model": "nope"}), 422, "model"),
        (client.post("/api/sessions", json={"model": "toy", "params": {"steps": 0}}), 422, "steps"),
        (client.post("/api/sessions", json={"model": "toy", "params": {"height": 12}}), 422, "height"),
        (client.post("/api/sessions", json={"model": "toy", "colour": "red"}), 422, "colour"),
        (client.post("/api/sessions", json={"model": "toy", "priority": 10**9}), 422, "priority"),
        (client.post("/api/sessions", content=b"{not json", headers={"content-type": "application/json"}), 422, None),
        (client.get("/api/sessions/..%2F..%2Fetc"), 404, None),
        (client.get("/api/sessions/not-an-id"), 422, "session_id"),
        (client.delete("/api/models"), 405, None),
        (client.get("/api/sessions/20990101-000000-deadbeef"), 404, "session"),
        (client.post("/api/sessions/20990101-000000-deadbeef/fork", json={"step": 1}), 404, "session"),
        (client.get("/api/jobs/0"), 422, "job_id"),
        (client.get("/api/jobs/999"), 422, "job"),
        (client.get("/files/videos/..%2Fjobs.sqlite"), 404, None),
        (client.get("/files/videos/jobs.sqlite"), 422, "name"),
        (client.get("/files/videos/notes.mp4"), 422, "name"),
        (client.get("/files/videos/20990101-000000-deadbeef.mp4"), 404, "name"),
    ]
    for response, status, field in cases:
        assert response.status_code == status, (response.request.url, response.text)
        body = response.json()
        assert body["message"], body
        if field is not None:
            assert body["field"] == field, (response.request.url, body)


def test_fork_beyond_the_schedule_and_extend_are_refused(client: TestClient) -> None:
    job = wait_job(client, client.post("/api/sessions", json={"model": "toy", "params": PARAMS}).json()["id"])
    sid = job["session_id"]
    beyond = client.post(f"/api/sessions/{sid}/fork", json={"step": 9})
    assert beyond.status_code == 422 and beyond.json()["field"] == "step" and "0..3" in beyond.json()["message"]
    extend = client.post(f"/api/sessions/{sid}/extend", json={"blocks": 2})
    assert extend.status_code == 409 and "autoregressive" in extend.json()["message"]
    edit = client.post(f"/api/sessions/{sid}/edit", json={})
    assert edit.status_code == 422 and edit.json()["field"] == "step"


def test_events_start_with_a_snapshot_then_stream_progress(client: TestClient) -> None:
    with client.websocket_connect("/api/events") as ws:
        first = ws.receive_json()
        assert first["type"] == "snapshot" and {"jobs", "models", "gpus", "paused"} <= set(first)
        job = client.post("/api/sessions", json={"model": "toy", "params": PARAMS}).json()
        seen: list[dict] = []
        while not any(e["type"] == "job" and e["job"]["state"] == "succeeded" for e in seen):
            seen.append(ws.receive_json())
        kinds = [e["type"] for e in seen]
        assert {"job", "log", "progress", "model", "preview"} <= set(kinds)
        previews = [e for e in seen if e["type"] == "preview"]
        assert [e["step"] for e in previews] == [1, 2, 3, 4]
        jpeg = base64.b64decode(previews[-1]["image"].removeprefix("data:image/jpeg;base64,"))
        assert Image.open(io.BytesIO(jpeg)).size == (16, 16)  # the toy's latents are the image: scale 1
        steps = [e["step"] for e in seen if e["type"] == "progress" and e["job_id"] == job["id"]]
        assert steps == [1, 2, 3, 4]
        loads = [e for e in seen if e["type"] == "model" and e["kind"] == "load"]
        assert loads and loads[0]["label"] == "toy/default"
        assert [e["seq"] for e in seen] == sorted(e["seq"] for e in seen)
    # A client that reconnects gets the current state first: the finished job is in it.
    with client.websocket_connect("/api/events") as ws:
        snapshot = ws.receive_json()
        assert any(j["id"] == job["id"] and j["state"] == "succeeded" for j in snapshot["jobs"])
        assert snapshot["models"][0]["states"][0]["state"] == "warm"
        assert [e["kind"] for e in snapshot["model_events"]] == ["loading", "load"]  # recent cache activity


def test_a_token_guards_every_route(tmp_path: Path, toy_plugins) -> None:
    app = create_app(Settings(data_dir=tmp_path / "s", device="cpu"), plugins=toy_plugins, token="s3cret")
    with TestClient(app) as c:
        assert c.get("/api/models").status_code == 401
        assert c.get("/api/models", headers={"Authorization": "Bearer nope"}).status_code == 401
        assert c.get("/api/models", headers={"Authorization": "Bearer s3cret"}).status_code == 200
        with pytest.raises(WebSocketDisconnect) as refused, c.websocket_connect("/api/events") as ws:
            ws.receive_json()
        assert refused.value.code == 4401
        with c.websocket_connect("/api/events?token=s3cret") as ws:
            assert ws.receive_json()["type"] == "snapshot"
        # The page and its scripts hold no data and load without the header (a browser cannot add one).
        assert c.get("/").status_code == 200 and c.get("/static/app.js").status_code == 200
        # Files take ?token= as well (a <video src> cannot send a header).
        name = "/files/videos/20990101-000000-deadbeef.mp4"
        assert c.get(name).status_code == 401 and c.get(f"{name}?token=nope").status_code == 401
        assert c.get(f"{name}?token=s3cret").status_code == 404  # through the guard: no such video


def test_serve_refuses_a_public_address_without_a_token(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "ARC_FABRIC_TOKEN"}
    out = subprocess.run(
        [sys.executable, "-m", "arc_fabric_core", "serve", "--host", "0.0.0.0", "--data", str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert out.returncode == 2 and "error: --host: 0.0.0.0 is reachable from other machines" in out.stderr


def test_serve_starts_on_localhost_and_answers(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    command = [sys.executable, "-m", "arc_fabric_core", "serve", "--port", str(port), "--data", str(tmp_path)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        import httpx

        deadline = time.monotonic() + 60
        while True:
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=2)
                break
            except httpx.TransportError:
                assert process.poll() is None and time.monotonic() < deadline, process.stderr.read()
                time.sleep(0.2)
        assert health.json()["ok"] is True
        spec = httpx.get(f"http://127.0.0.1:{port}/openapi.json", timeout=5).json()
        assert {"/api/models", "/api/sessions", "/api/jobs/{job_id}", "/api/gpus"} <= set(spec["paths"])
    finally:
        process.terminate()
        process.wait(30)


def test_the_api_refuses_what_the_engine_refuses_before_queueing(tmp_path: Path, toy_plugins) -> None:
    """Every session operation the engine would refuse in the worker is refused by the
    API first: the same 4xx message, and nothing queued. One case per operation and bound."""
    toy_plugins.register(Blocks(), name="blocks")
    app = create_app(Settings(data_dir=tmp_path / "server", device="cpu", write_videos=False), plugins=toy_plugins)
    with TestClient(app) as client:
        engine = app.state.orchestrator.engine

        def made(body: dict) -> str:
            job = wait_job(client, client.post(body.pop("path", "/api/sessions"), json=body).json()["id"])
            assert job["state"] == "succeeded", job["error"]
            return job["session_id"]

        done = made({"model": "toy", "params": PARAMS})  # 4 steps, every one checkpointed
        forked = made({"path": f"/api/sessions/{done}/fork", "step": 2})  # its state before step 2 is its parent's
        paused = engine.create("toy", PARAMS)
        engine.run(paused, until=2)  # checkpoints at steps 0..2 only
        blocks_params = {**PARAMS, "steps": 2}  # 2 blocks of 2 steps
        blocks = made({"model": "blocks", "params": blocks_params})
        blocks_paused = engine.create("blocks", blocks_params)
        engine.run(blocks_paused, until=1)

        cases: list[tuple[str, dict[str, Any], Any]] = [
            # fork: the step's bounds, a checkpoint there, the fork point of a fork, the overrides
            ("fork", {"session": done, "step": 4}, lambda: engine.fork(done, 4)),
            ("fork", {"session": paused.id, "step": 3}, lambda: engine.fork(paused.id, 3)),
            ("fork", {"session": forked, "step": 1}, lambda: engine.fork(forked, 1)),
            (
                "fork",
                {"session": done, "step": 1, "overrides": {"steps": 8}},
                lambda: engine.fork(done, 1, {"steps": 8}),
            ),
            (
                "fork",
                {"session": done, "step": 1, "overrides": {"seed": -1}},
                lambda: engine.fork(done, 1, {"seed": -1}),
            ),
            # edit: the step and strength bounds, the mask, a fixed field, an autoregressive model
            ("edit", {"session": done, "step": 4}, lambda: engine.edit(done, step=4)),
            ("edit", {"session": done, "strength": 0.1}, lambda: engine.edit(done, strength=0.1)),
            (
                "edit",
                {"session": done, "step": 1, "mask": {"rect": [0, 0, 99, 8]}},
                lambda: engine.edit(done, step=1, mask=EditMask(rect=(0, 0, 99, 8))),
            ),
            (
                "edit",
                {"session": done, "step": 1, "overrides": {"height": 32}},
                lambda: engine.edit(done, step=1, overrides={"height": 32}),
            ),
            ("edit", {"session": blocks, "step": 1}, lambda: engine.edit(blocks, step=1)),
            # resume: a finished session, until out of range
            ("resume", {"session": done}, lambda: engine.resume(done)),
            ("resume", {"session": paused.id, "until": 9}, lambda: engine.resume(paused.id, until=9)),
            # extend: not autoregressive, not finished
            ("extend", {"session": done, "blocks": 1}, lambda: engine.extend(done, 1)),
            ("extend", {"session": blocks_paused.id, "blocks": 1}, lambda: engine.extend(blocks_paused.id, 1)),
            # rewind: not autoregressive, the block's bounds, no checkpoint at the block, a fixed field
            ("rewind", {"session": done, "block": 0}, lambda: engine.rewind(done, 0)),
            ("rewind", {"session": blocks, "block": 2}, lambda: engine.rewind(blocks, 2)),
            ("rewind", {"session": blocks_paused.id, "block": 1}, lambda: engine.rewind(blocks_paused.id, 1)),
            (
                "rewind",
                {"session": blocks, "block": 1, "overrides": {"width": 8}},
                lambda: engine.rewind(blocks, 1, overrides={"width": 8}),
            ),
        ]
        before = client.get("/api/jobs").json()
        for kind, body, engine_op in cases:
            with pytest.raises(ArcFabricError) as refused:
                engine_op()
            exc = refused.value
            expected = (422, exc.field, exc.message) if isinstance(exc, InputError) else (409, "session", str(exc))
            body = dict(body)
            session = body.pop("session")
            answer = client.post(f"/api/sessions/{session}/{kind}", json=body)
            got = (answer.status_code, answer.json().get("field"), answer.json().get("message"))
            assert got == expected, (kind, body)
        assert client.get("/api/jobs").json() == before  # nothing was queued
        # The session page's fork bound: the last step with a fork is total - 1.
        ok = client.post(f"/api/sessions/{done}/fork", json={"step": 3})
        assert ok.status_code == 202 and wait_job(client, ok.json()["id"])["state"] == "succeeded"


def test_models_say_which_variant_auto_runs_its_defaults_and_capabilities(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the generate form fills from: per model the variant ``auto`` resolves to on
    this server (as the CLI resolves it) and the defaults of every variant."""
    from arc_fabric_core.dispatch.plugins import Plugins

    plugins = Plugins()  # the installed plugins (wan21, ltx, longlive) and the toy
    plugins.register(toy, name="toy")
    for name in plugins.model_names():
        for variant in plugins.model(name).variants:
            if variant.weights_env:
                monkeypatch.delenv(variant.weights_env, raising=False)
    app = create_app(Settings(data_dir=tmp_path / "server", device="cpu"), plugins=plugins, start_worker=False)
    with TestClient(app) as client:
        models = {m["name"]: m for m in client.get("/api/models").json()}
        assert {"wan21", "ltx", "longlive", "toy"} <= set(models)
        ltx = models["ltx"]
        assert ltx["auto_variant"] == "tiny"
        tiny = next(v for v in ltx["variants"] if v["name"] == "tiny")["defaults"]
        # The tiny model's own defaults, not the real model's (97x480x704, 30 steps, guidance 3).
        assert (tiny["num_frames"], tiny["height"], tiny["width"]) == (9, 64, 96)
        assert (tiny["timestep_schedule"], tiny["steps"], tiny["guidance"]) == ("distilled", 8, 1.0)
        dev = next(v for v in ltx["variants"] if v["name"] == "2b-dev")["defaults"]
        assert (dev["num_frames"], dev["steps"], dev["timestep_schedule"]) == (97, 30, "linear-quadratic")
        for name, model in models.items():  # every variant's defaults are what the model accepts, as given
            spec = plugins.model(name)
            for variant in model["variants"]:
                ref = ModelRef(spec, spec.variant(variant["name"]), None)
                assert ref.params(variant["defaults"]).model_dump(mode="json") == variant["defaults"]
        assert models["toy"]["auto_variant"] == "default"
        # Weights configured for a real variant: auto runs it (the first one configured).
        monkeypatch.setenv("ARC_LTX_2B_DEV_WEIGHTS", str(tmp_path))
        assert client.get("/api/models/ltx").json()["auto_variant"] == "2b-dev"
        # What each model can do: the session page shows the operations it takes.
        ops = {name: m["capabilities"]["operations"] for name, m in models.items()}
        assert "edit" in ops["wan21"] and "extend" not in ops["wan21"] and "rewind" not in ops["wan21"]
        assert {"extend", "rewind"} <= set(ops["longlive"]) and "edit" not in ops["longlive"]
        assert models["longlive"]["capabilities"]["autoregressive"] is True
        assert models["toy"]["needs_weights"] is False and models["toy"]["capabilities"]["needs_weights"] is False


def test_health_says_what_a_cancel_does_with_the_executor(tmp_path: Path, toy_plugins) -> None:
    inprocess = create_app(Settings(data_dir=tmp_path / "a", device="cpu"), plugins=toy_plugins, start_worker=False)
    with TestClient(inprocess) as client:
        health = client.get("/api/health").json()
        assert health["executor"] == "inprocess" and health["cancel_grace"] is None
        assert health["cancel_note"].startswith("stops at the next step")
    settings = Settings(data_dir=tmp_path / "b", device="cpu", executor="subprocess", cancel_grace=2.5)
    with TestClient(create_app(settings, plugins=toy_plugins, start_worker=False)) as client:
        health = client.get("/api/health").json()
        assert health["executor"] == "subprocess" and health["cancel_grace"] == 2.5
        assert "within 2.5 s by ending its worker" in health["cancel_note"]
        with client.websocket_connect("/api/events") as ws:
            assert ws.receive_json()["server"] == {k: health[k] for k in ("executor", "cancel_grace", "cancel_note")}
