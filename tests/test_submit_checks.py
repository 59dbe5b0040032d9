"""A job the engine would refuse is refused when it is submitted: through the API (a 4xx
naming the field) and through ``jobs submit`` (one line, exit 2), with nothing queued."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient

import arc_fabric_core.dispatch.plugins as plugins_module
from arc_fabric_core.cli.main import main
from arc_fabric_core.dispatch.plugins import Plugins
from arc_fabric_core.server.app import create_app
from arc_fabric_core.server.orchestrator import Settings
from arc_toy import plugin as toy  # on the path: conftest puts it there

PARAMS = {"num_frames": 4, "height": 16, "width": 16, "steps": 4, "prompt": "bands"}
MISSING = "20261127-044059-1d676c07"  # well formed, in no store


@dataclass
class Server:
    client: TestClient
    data: Path
    finished: str  # a session run to its end (4 steps)
    paused: str  # a session stopped at step 2 of 4


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    plugins = Plugins(load_entrypoints=False)
    plugins.register(toy, name="toy")
    data = tmp_path_factory.mktemp("server")
    # No worker: a job that got through stays queued, for the test to see.
    app = create_app(Settings(data_dir=data, device="cpu"), plugins=plugins, start_worker=False)
    engine = app.state.orchestrator.engine
    finished = engine.run(engine.create("toy", PARAMS))
    paused = engine.run(engine.create("toy", PARAMS), until=2)
    with TestClient(app) as client:
        yield Server(client, data, finished.id, paused.id)


@pytest.fixture
def jobs_cli(server: Server, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Any:
    """``python -m arc_fabric_core jobs submit ...`` in-process, on the server's store and
    queue, with the toy plugin installed: (exit code, stdout, stderr)."""
    plugins = Plugins(load_entrypoints=False)
    plugins.register(toy, name="toy")
    monkeypatch.setattr(plugins_module, "_plugins", plugins)

    def run(*argv: str) -> tuple[int, str, str]:
        capsys.readouterr()
        try:
            main(["jobs", "--db", str(server.data / "jobs.sqlite"), "--store", str(server.data / "sessions"), *argv])
            code = 0
        except SystemExit as exc:
            code = int(exc.code or 0)
        out, err = capsys.readouterr()
        return code, out, err

    return run


def queued(server: Server) -> list[dict[str, Any]]:
    return server.client.get("/api/jobs", params={"state": "queued"}).json()


# (id, HTTP path under /api/sessions (F: the finished session, P: the paused one, M: a
# missing one), raw JSON body (JSON's Infinity and NaN included), the same job for
# `jobs submit` (None: no spelling there), the field named, the HTTP status).
CASES = [
    pytest.param(
        "",
        '{"model": "toy", "params": {"guidance": Infinity}}',
        "generate model=toy guidance=inf",
        "guidance",
        422,
        id="guidance-infinity",
    ),
    pytest.param(
        "",
        '{"model": "toy", "params": {"speed": NaN}}',
        "generate model=toy speed=nan",
        "speed",
        422,
        id="plugin-float-nan",
    ),
    pytest.param(
        "",
        '{"model": "toy", "params": {"seed": 18446744073709551616}}',
        "generate model=toy seed=18446744073709551616",
        "seed",
        422,
        id="seed-2^64",
    ),
    pytest.param(
        "",
        '{"model": "toy", "params": {"steps": 99999999999999999999}}',
        "generate model=toy steps=99999999999999999999",
        "steps",
        422,
        id="steps-huge",
    ),
    pytest.param(
        "",
        '{"model": "toy", "schedule": {"stages": [{}, {}], "unit": "step", "boundary": Infinity}}',
        None,
        "schedule.boundary",
        422,
        id="step-boundary-infinity",
    ),
    pytest.param(
        "",
        '{"model": "toy", "schedule": {"stages": [{"guidance": Infinity}, {}], "boundary": 0.5}}',
        None,
        "schedule.stages.0.guidance",
        422,
        id="stage-guidance-infinity",
    ),
    pytest.param("/F/fork", '{"step": 4}', "fork session=F step=4", "step", 422, id="fork-at-total"),
    pytest.param(
        "/F/fork",
        '{"step": 2, "overrides": {"guidance": -Infinity}}',
        "fork session=F step=2 guidance=-inf",
        "guidance",
        422,
        id="fork-guidance-infinity",
    ),
    pytest.param(
        "/F/fork",
        '{"step": 2, "overrides": {"seed": 18446744073709551616}}',
        "fork session=F step=2 seed=18446744073709551616",
        "seed",
        422,
        id="fork-seed-2^64",
    ),
    pytest.param("/M/fork", '{"step": 2}', "fork session=M step=2", "session", 404, id="fork-missing-session"),
    pytest.param(
        "/F/edit",
        '{"step": 2, "mask": {"rect": [100, 100, 0, 0]}}',
        "edit session=F step=2 rect=100,100,0,0",
        "mask.rect",
        422,
        id="edit-empty-rect",
    ),
    pytest.param(
        "/F/edit",
        '{"step": 2, "mask": {"frames": [50, 2]}}',
        "edit session=F step=2 frames=50:2",
        "mask.frames",
        422,
        id="edit-backward-frames",
    ),
    pytest.param(
        "/F/edit",
        '{"step": 2, "overrides": {"steps": 9}}',
        "edit session=F step=2 steps=9",
        "steps",
        422,
        id="edit-steps-override",
    ),
    pytest.param(
        "/F/edit",
        '{"step": 2, "overrides": {"colour": 1}}',
        "edit session=F step=2 colour=1",
        "colour",
        422,
        id="edit-unknown-override",
    ),
    pytest.param(
        "/F/edit", '{"strength": 1e-9}', "edit session=F strength=1e-9", "strength", 422, id="edit-tiny-strength"
    ),
    pytest.param("/F/edit", '{"strength": 2}', "edit session=F strength=2", "strength", 422, id="edit-strength-2"),
    pytest.param(
        "/F/edit", '{"strength": NaN}', "edit session=F strength=nan", "strength", 422, id="edit-strength-nan"
    ),
    pytest.param(
        "/P/resume", '{"until": 99999}', "resume session=P until=99999", "until", 422, id="resume-past-the-end"
    ),
    pytest.param("/F/decode", '{"step": 99}', "decode session=F step=99", "step", 422, id="decode-no-checkpoint"),
    pytest.param("/M/decode", "{}", "decode session=M", "session", 404, id="decode-missing-session"),
]


@pytest.mark.parametrize(("path", "body", "items", "field", "status"), CASES)
def test_a_job_the_engine_refuses_is_refused_on_submit(
    server: Server, jobs_cli: Any, path: str, body: str, items: str | None, field: str, status: int
) -> None:
    ids = {"F": server.finished, "P": server.paused, "M": MISSING}
    path = "/".join(ids.get(part, part) for part in path.split("/"))
    answer = server.client.post(f"/api/sessions{path}", content=body, headers={"content-type": "application/json"})
    assert (answer.status_code, answer.json()["field"]) == (status, field), answer.text
    assert queued(server) == []
    if items is None:
        return
    argv = [f"session={ids[v]}" if k == "session" else i for i in items.split() for k, _, v in [i.partition("=")]]
    code, out, err = jobs_cli("submit", *argv)
    assert code == 2 and out == "" and err.count("\n") == 1 and err.startswith(f"error: {field}"), (code, out, err)
    assert queued(server) == []


@pytest.mark.parametrize(
    ("argv", "field"),
    [
        (["submit", "fork", "session=nope", "step=1"], "session"),
        (["submit", "edit", "session=nope", "strength=0.5"], "session"),
        (["submit", "resume", "session=../../etc"], "session"),
        (["submit", "generate"], "model"),
        (["submit", "generate", "model=toy", "--priority", "99999999999999999999"], "priority"),
        (["submit", "generate", "model=toy", "--priority", "1001"], "priority"),
    ],
    ids=[
        "fork-no-such-id",
        "edit-no-such-id",
        "resume-a-path",
        "generate-without-model",
        "priority-huge",
        "priority-1001",
    ],
)
def test_jobs_submit_refuses_in_one_line(server: Server, jobs_cli: Any, argv: list[str], field: str) -> None:
    code, out, err = jobs_cli(*argv)
    assert code == 2 and out == "" and err.count("\n") == 1 and err.startswith(f"error: {field}"), (code, out, err)
    assert queued(server) == []


def test_a_good_job_still_queues_from_both(server: Server, jobs_cli: Any) -> None:
    fork = {"step": 2, "overrides": {"seed": 2**64 - 1}}  # the largest seed a generator takes
    answer = server.client.post(f"/api/sessions/{server.finished}/fork", json=fork)
    assert answer.status_code == 202, answer.text
    # An abbreviated id (as `sessions` takes it) becomes the whole one.
    code, out, err = jobs_cli("submit", "resume", f"session={server.paused[-8:]}", "until=3", "--priority", "1000")
    assert code == 0 and "queued" in out, err
    jobs = queued(server)
    assert [j["payload"].get("session") for j in jobs] == [server.finished, server.paused]
    for job in jobs:
        server.client.post(f"/api/jobs/{job['id']}/cancel")


def test_a_decode_the_server_does_not_run_now_is_answered_with_its_job(server: Server, jobs_cli: Any) -> None:
    """No worker works the queue: the decode job is queued and the answer is the job (202),
    to poll; ``jobs submit decode`` queues the same job."""
    answer = server.client.post(f"/api/sessions/{server.paused}/decode", json={"step": 2})
    assert answer.status_code == 202, answer.text
    job = answer.json()
    assert (job["kind"], job["state"], job["payload"]) == ("decode", "queued", {"session": server.paused, "step": 2})
    assert job["priority"] == 1000  # ahead of every queued generation
    code, out, err = jobs_cli("submit", "decode", f"session={server.finished}")
    assert code == 0 and "queued (decode, priority 0)" in out, err
    jobs = queued(server)
    assert [(j["kind"], j["payload"]) for j in jobs] == [
        ("decode", {"session": server.paused, "step": 2}),
        ("decode", {"session": server.finished}),
    ]
    for each in jobs:
        server.client.post(f"/api/jobs/{each['id']}/cancel")
