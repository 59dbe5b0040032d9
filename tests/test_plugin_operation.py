"""A plugin registers an operation of its own (``tests/retry_operation.py``) and it is
usable from the CLI, the API (in the OpenAPI schema), ``jobs submit`` and the job queue,
with no core edit: each is derived from the operations registry."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient
from retry_operation import RetryPlugin

import arc_fabric_core.dispatch.plugins as plugins_module
from arc_fabric_core.cli.main import main
from arc_fabric_core.dispatch.plugins import Plugins
from arc_fabric_core.engine.facade import Engine
from arc_fabric_core.server.app import create_app
from arc_fabric_core.server.orchestrator import Settings
from arc_fabric_core.store.files import SessionStore
from arc_toy import plugin as toy

PARAMS = {"num_frames": 2, "height": 8, "width": 8, "steps": 3, "seed": 1}


@pytest.fixture
def plugins(monkeypatch: pytest.MonkeyPatch) -> Plugins:
    plugins = Plugins(load_entrypoints=False)
    plugins.register(toy, name="toy")
    plugins.register(RetryPlugin(), name="retry")
    monkeypatch.setattr(plugins_module, "_plugins", plugins)  # what the CLI's get_plugins() gives
    return plugins


def _generated(engine: Engine, seed: int) -> torch.Tensor:
    session = engine.create("toy", {**PARAMS, "seed": seed})
    engine.run(session)
    return engine.final_latents(session)


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    try:
        main(list(argv))
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def test_the_registry_holds_it_beside_the_built_in_ones(plugins: Plugins) -> None:
    assert list(plugins.operations())[-1] == "retry"
    assert {"generate", "resume", "fork", "hand-off", "edit", "extend", "rewind", "decode"} <= set(plugins.operations())
    assert "retry" in plugins.describe_model("toy")["operations"]
    listed = {p["name"]: p for p in plugins.describe()}
    assert listed["retry"]["operations"] == ["retry"] and listed["toy"]["operations"] == []


def test_the_api_has_its_route_schema_and_job(tmp_path: Path, plugins: Plugins) -> None:
    app = create_app(Settings(data_dir=tmp_path, device="cpu", write_videos=False), plugins=plugins)
    with TestClient(app) as client:
        spec = client.get("/openapi.json").json()
        assert "/api/sessions/{session_id}/retry" in spec["paths"]
        listed = {o["name"]: o for o in client.get("/api/operations").json()}
        assert listed["retry"]["schema"]["required"] == ["seed"] and listed["retry"]["on_session"] is True
        engine = app.state.orchestrator.engine
        parent = engine.run(engine.create("toy", PARAMS))
        bad = client.post(f"/api/sessions/{parent.id}/retry", json={"seed": -1})
        assert bad.status_code == 422 and "seed" in bad.text
        same = client.post(f"/api/sessions/{parent.id}/retry", json={"seed": 1})
        assert same.status_code == 422 and same.json()["field"] == "seed"
        job = client.post(f"/api/sessions/{parent.id}/retry", json={"seed": 7}).json()
        assert job["kind"] == "retry" and job["payload"] == {"session": parent.id, "seed": 7}
        for _ in range(600):
            job = client.get(f"/api/jobs/{job['id']}").json()
            if job["state"] in ("succeeded", "failed"):
                break
            import time

            time.sleep(0.05)
        assert job["state"] == "succeeded", job
        doc = engine.store.load_doc(job["session_id"])
        assert (doc.operation, doc.parent, doc.overrides) == ("retry", parent.id, {"seed": 7})
        assert torch.equal(engine.final_latents(job["session_id"]), _generated(engine, 7))


def test_jobs_submit_and_work_take_it(tmp_path: Path, plugins: Plugins, capsys: pytest.CaptureFixture[str]) -> None:
    store, db = tmp_path / "sessions", tmp_path / "jobs.sqlite"
    engine = Engine(SessionStore(store), plugins=plugins, device="cpu")
    parent = engine.run(engine.create("toy", PARAMS))
    jobs = ["jobs", "--db", str(db), "--store", str(store)]
    code, _, err = _cli(capsys, *jobs, "submit", "retry", f"session={parent.id}", "seed=abc")
    assert code == 2 and err.startswith("error: seed:") and len(err.strip().splitlines()) == 1
    code, out, _ = _cli(capsys, *jobs, "submit", "retry", f"session={parent.id}", "seed=8")
    assert code == 0 and "queued (retry" in out
    code, out, err = _cli(capsys, *jobs, "work", "--device", "cpu")
    assert code == 0, err
    child = next(d for d in engine.store.load_all() if d.operation == "retry")
    assert torch.equal(engine.final_latents(child.id), _generated(engine, 8))


def test_the_sessions_cli_has_its_subcommand(
    tmp_path: Path, plugins: Plugins, capsys: pytest.CaptureFixture[str]
) -> None:
    store = tmp_path / "sessions"
    engine = Engine(SessionStore(store), plugins=plugins, device="cpu")
    parent = engine.run(engine.create("toy", PARAMS))
    code, out, _ = _cli(capsys, "sessions", "--store", str(store), "retry", "--help")
    assert code == 0 and "--seed" in out
    code, out, err = _cli(
        capsys, "sessions", "--store", str(store), "--device", "cpu", "retry", parent.id, "--seed", "9", "--no-video"
    )
    assert code == 0, err
    child = next(d for d in engine.store.load_all() if d.operation == "retry")
    assert f"retry: {child.id} from {parent.id}" in out
    assert torch.equal(engine.final_latents(child.id), _generated(engine, 9))
    code, _, err = _cli(capsys, "sessions", "--store", str(store), "retry", parent.id)
    assert code == 2 and "--seed" in err  # required, said by argparse in one line
