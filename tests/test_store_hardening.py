"""The store under damage and contention: malformed documents, readers beside writers,
copied folders, killed writers, short ids and crash debris."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from arc_fabric_core.cli.sessions import main as sessions_main
from arc_fabric_core.contract.errors import DamagedSessionError, SessionError
from arc_fabric_core.engine.facade import Engine
from arc_fabric_core.store.files import SessionStore
from arc_fabric_core.store.session import SessionStatus

PARAMS = {"num_frames": 4, "height": 16, "width": 16, "steps": 6, "prompt": "dusk"}


def cli(capsys: pytest.CaptureFixture[str], store: SessionStore, *argv: str) -> tuple[int, str, str]:
    """``sessions ...`` as a user runs it: exit code, stdout, stderr."""
    code = 0
    try:
        sessions_main(["--store", str(store.root), *argv])
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(err: str) -> str:
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


@pytest.fixture
def healthy(toy_engine: Engine) -> str:
    session = toy_engine.create("toy", PARAMS)
    toy_engine.run(session)
    return session.id


def damage(store: SessionStore, session_id: str, text: str) -> Path:
    path = store.session_dir(session_id) / "session.json"
    path.write_text(text)
    return path


def truncated(store: SessionStore, session_id: str) -> str:
    return (store.session_dir(session_id) / "session.json").read_text()[:57]


def missing_model(store: SessionStore, session_id: str) -> str:
    raw = json.loads((store.session_dir(session_id) / "session.json").read_text())
    del raw["model"]
    return json.dumps(raw)


def bad_version(store: SessionStore, session_id: str) -> str:
    raw = json.loads((store.session_dir(session_id) / "session.json").read_text())
    raw["format_version"] = "one.two"
    return json.dumps(raw)


DAMAGES = {
    "a list": lambda store, sid: "[]",
    "null": lambda store, sid: "null",
    "no model": missing_model,
    "format_version": bad_version,
    "truncated": truncated,
}


@pytest.mark.parametrize("kind", list(DAMAGES))
def test_a_damaged_document_is_listed_as_damaged_and_never_affects_the_others(
    kind: str, toy_engine: Engine, healthy: str, capsys: pytest.CaptureFixture[str]
) -> None:
    store = toy_engine.store
    bad = toy_engine.create("toy", {**PARAMS, "prompt": "to be damaged"}).id
    path = damage(store, bad, DAMAGES[kind](store, bad))

    code, out, err = cli(capsys, store, "list")
    assert code == 0 and "Traceback" not in err, err
    assert healthy in out, "a healthy session stays listed"
    (line,) = [li for li in out.splitlines() if li.startswith(bad)]
    assert "damaged" in line and str(path) in line, "never silently left out"

    code, out, err = cli(capsys, store, "list", "--json")
    listed = {s["id"]: s for s in json.loads(out)}
    assert listed[bad]["status"] == "damaged" and listed[healthy]["status"] == "completed"

    code, out, err = cli(capsys, store, "show", healthy)
    assert code == 0 and "completed" in out, err
    for command in ("show", "resume"):
        code, out, err = cli(capsys, store, command, bad)
        line = one_line_error(err)
        assert code == 2 and bad in line and "session.json" in line and "damaged" in line, line


@pytest.mark.parametrize("kind", ["a list", "no model", "truncated"])
def test_the_api_lists_a_damaged_session_and_serves_the_healthy_ones(kind: str, tmp_path: Path, toy_plugins) -> None:
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from arc_fabric_core.server.app import create_app
    from arc_fabric_core.server.orchestrator import Settings

    app = create_app(Settings(data_dir=tmp_path / "server", device="cpu"), plugins=toy_plugins, start_worker=False)
    orch = app.state.orchestrator
    good = orch.engine.create("toy", PARAMS)
    orch.engine.run(good)
    bad = orch.engine.create("toy", PARAMS).id
    damage(orch.store, bad, DAMAGES[kind](orch.store, bad))
    with TestClient(app) as client:
        listed = client.get("/api/sessions")
        assert listed.status_code == 200, listed.text
        rows = {s["id"]: s for s in listed.json()}
        assert rows[good.id]["status"] == "completed"
        assert rows[bad]["status"] == "damaged" and rows[bad]["file"].endswith(f"{bad}/session.json")
        assert f"sessions repair {bad}" in rows[bad]["error"]
        assert client.get(f"/api/sessions/{good.id}").status_code == 200
        got = client.get(f"/api/sessions/{bad}")
        assert got.status_code == 409 and bad in got.json()["message"] and "damaged" in got.json()["message"]


def test_repair_rebuilds_a_damaged_document_and_the_session_resumes_exactly(
    toy_engine: Engine, toy_plugins, capsys: pytest.CaptureFixture[str]
) -> None:
    store = toy_engine.store
    reference = toy_engine.create("toy", PARAMS)
    toy_engine.run(reference)
    session = toy_engine.create("toy", PARAMS)
    toy_engine.run(session, until=4)
    damage(store, session.id, truncated(store, session.id))
    with pytest.raises(DamagedSessionError):
        store.load_doc(session.id)

    code, out, err = cli(capsys, store, "repair", session.id)
    assert code == 0, err
    assert "5 checkpoints, steps 0..4" in out and "paused at step 4" in out, out
    doc = store.load_doc(session.id)
    assert (doc.status, doc.step_index, doc.params["prompt"]) == (SessionStatus.PAUSED, 4, "dusk")

    fresh = Engine(SessionStore(store.root), plugins=toy_plugins, device="cpu")
    fresh.resume(session.id)
    assert torch.equal(fresh.final_latents(session.id), toy_engine.final_latents(reference.id))
    code, out, err = cli(capsys, store, "repair", session.id)
    assert code == 0 and "intact" in out


POLLER = textwrap.dedent(
    """
    import sys, time
    from arc_fabric_core.store.files import SessionStore
    store, end = SessionStore(sys.argv[1]), time.monotonic() + float(sys.argv[3])
    print("polling", flush=True)
    n = 0
    while time.monotonic() < end:
        store.is_locked(sys.argv[2])
        n += 1
    print(n, flush=True)
    """
)


def test_a_reader_polling_the_lock_never_makes_a_writer_fail(toy_engine: Engine, healthy: str) -> None:
    store = toy_engine.store
    poller = subprocess.Popen(
        [sys.executable, "-c", POLLER, str(store.root), healthy, "8"], stdout=subprocess.PIPE, text=True
    )
    assert poller.stdout is not None and poller.stdout.readline().strip() == "polling"
    refused = attempts = 0
    try:
        while poller.poll() is None and attempts < 20_000:
            attempts += 1
            try:
                with store.lock(healthy):
                    pass
            except SessionError:
                refused += 1
    finally:
        poller.kill()
        poller.wait()
    assert attempts > 500
    assert refused == 0, f"{refused} of {attempts} writers refused while a reader polled"
    assert not (store.session_dir("20990101-000000-00000000")).exists()
    assert store.is_locked("20990101-000000-00000000") is False
    assert not (store.session_dir("20990101-000000-00000000")).exists(), "a read creates nothing"


HOLDER = textwrap.dedent(
    """
    import sys, time
    from arc_fabric_core.store.files import SessionStore
    with SessionStore(sys.argv[1]).lock(sys.argv[2]):
        print("locked", flush=True)
        time.sleep(60)
    """
)


def test_a_killed_run_shows_as_interrupted_and_a_live_one_as_running(
    toy_engine: Engine, capsys: pytest.CaptureFixture[str]
) -> None:
    store = toy_engine.store
    session = toy_engine.create("toy", PARAMS)
    toy_engine.run(session, until=2)
    store.set_status(session.id, SessionStatus.RUNNING)  # what a SIGKILLed run leaves
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(store.root), session.id], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        _, out, _ = cli(capsys, store, "show", session.id)
        assert "status    running" in out, out
    finally:
        holder.kill()
        holder.wait()
    _, out, _ = cli(capsys, store, "show", session.id)
    assert "status    interrupted" in out, out
    _code, out, _err = cli(capsys, store, "list")
    assert "interrupted" in out
    toy_engine.resume(session.id)
    assert store.load_doc(session.id).status is SessionStatus.COMPLETED


def test_delete_removes_the_folder_named_not_the_one_its_copy_names(
    toy_engine: Engine, healthy: str, capsys: pytest.CaptureFixture[str]
) -> None:
    store = toy_engine.store
    copy = store.root / f"{healthy}.bak"
    shutil.copytree(store.session_dir(healthy), copy)
    code, out, err = cli(capsys, store, "list")
    assert f"{healthy}.bak  damaged" in out and "a copied or renamed folder" in out, out

    code, out, err = cli(capsys, store, "delete", f"{healthy}.bak")
    assert code == 0, err
    assert not copy.exists()
    assert store.load_doc(healthy).status is SessionStatus.COMPLETED, "the original is untouched"


@pytest.mark.parametrize("given", ["", "1", "0c"])
def test_an_empty_or_tiny_id_never_resolves_to_a_session(
    given: str, toy_engine: Engine, healthy: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _out, err = cli(capsys, toy_engine.store, "delete", given)
    line = one_line_error(err)
    assert code == 2 and "at least 4 characters" in line, line
    assert toy_engine.store.exists(healthy)


def test_deleting_a_session_this_server_runs_does_not_blame_another_process(tmp_path: Path, toy_plugins) -> None:
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from arc_fabric_core.server.app import create_app
    from arc_fabric_core.server.orchestrator import Settings

    app = create_app(Settings(data_dir=tmp_path / "server", device="cpu"), plugins=toy_plugins, start_worker=False)
    orch = app.state.orchestrator
    session = orch.engine.create("toy", PARAMS)
    with TestClient(app) as client, orch.store.lock(session.id):  # as a job of this server holds it
        got = client.delete(f"/api/sessions/{session.id}")
        assert got.status_code == 409
        message = got.json()["message"]
        assert "another process" not in message and "this process" in message, message
        assert client.get(f"/api/sessions/{session.id}").json()["locked"] is True


def test_temporary_files_of_a_dead_writer_go_at_once(
    toy_engine: Engine, healthy: str, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = toy_engine.store.session_dir(healthy)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    orphan = folder / f".session.json.tmp-{int(dead.stdout)}-1"
    in_flight = folder / f".session.json.tmp-{os.getpid()}-1"
    for path in (orphan, in_flight):
        path.write_text("{")
    now = time.time()
    os.utime(orphan, (now, now))
    code, out, err = cli(capsys, toy_engine.store, "gc")
    assert code == 0, err
    assert not orphan.exists() and "temporary debris" in out
    assert in_flight.exists(), "a live writer's fresh temporary file is left alone"
