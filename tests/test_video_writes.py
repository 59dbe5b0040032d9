"""Writing videos: concurrent writers of one file, a full disk, an --out that cannot exist.

A full disk is simulated without root: a file size limit (RLIMIT_FSIZE) on the command,
or an ffmpeg behind a wrapper that may write nothing (``IMAGEIO_FFMPEG_EXE``).
"""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch

from arc_fabric_core.engine.facade import Engine
from arc_fabric_core.media.video import read_video, write_mp4

ROOT = Path(__file__).resolve().parents[1]
TOY = ROOT / "examples" / "arc_toy"
PARAMS = {"num_frames": 9, "height": 32, "width": 32, "steps": 3, "prompt": "bands"}
# `python -m arc_fabric_core` with only the toy plugin (it is not installed: its folder is on the path).
WITH_TOY = (
    "import sys; from arc_fabric_core.dispatch.plugins import get_plugins; from arc_toy import plugin; "
    "get_plugins().register(plugin, name='toy'); from arc_fabric_core.cli.main import main; main(sys.argv[1:])"
)


def toy_env(**extra: str) -> dict[str, str]:
    path = os.pathsep.join([str(TOY), str(ROOT), os.environ.get("PYTHONPATH", "")])
    return {**os.environ, "ARC_FABRIC_LOAD_PLUGINS": "", "PYTHONPATH": path, "HYDRA_FULL_ERROR": "0", **extra}


def run_toy_cli(*args: str, cwd: Path, env: dict[str, str] | None = None, limit: int | None = None):
    """The command line with the toy model; with ``limit``, no file it writes may pass that many bytes."""

    def limited() -> None:
        assert limit is not None
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past it fails (EFBIG) instead of killing

    return subprocess.run(
        [sys.executable, "-c", WITH_TOY, *args],
        cwd=cwd,
        env=env or toy_env(),
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=limited if limit is not None else None,
    )


@pytest.fixture
def full_disk_ffmpeg(tmp_path: Path) -> str:
    """An ffmpeg for which the disk is full: every byte it writes to a file fails."""
    from imageio_ffmpeg import get_ffmpeg_exe

    script = tmp_path / "ffmpeg-full-disk"
    script.write_text(f"#!/bin/sh\ntrap '' XFSZ\nulimit -f 0\nexec '{get_ffmpeg_exe()}' \"$@\"\n")
    script.chmod(0o755)
    return str(script)


@pytest.fixture
def finished(toy_engine: Engine) -> str:
    session = toy_engine.create("toy", PARAMS)
    toy_engine.run(session)
    return session.id


def one_error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in stderr, stderr
    return lines[0]


def debris(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".tmp" in p.name)


def frames(count: int, seed: int) -> torch.Tensor:
    return torch.rand(count, 32, 32, 3, generator=torch.Generator().manual_seed(seed))


# ---------------------------------------------------------------- concurrent writers


@pytest.fixture
def client(tmp_path: Path, toy_plugins):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from arc_fabric_core.server.app import create_app
    from arc_fabric_core.server.orchestrator import Settings

    app = create_app(Settings(data_dir=tmp_path / "server", device="cpu", gpu_poll_seconds=0.2), plugins=toy_plugins)
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


def wait_job(client, job_id: int, timeout: float = 120) -> dict:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/api/jobs/{job_id}").json()
        if job["state"] in ("succeeded", "failed", "cancelled"):
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} still {job['state']}")


def test_parallel_decodes_of_one_session_all_succeed_and_leave_its_complete_video(client) -> None:
    job = wait_job(client, client.post("/api/sessions", json={"model": "toy", "params": PARAMS}).json()["id"])
    assert job["state"] == "succeeded", job["error"]
    session = job["session_id"]
    start = threading.Barrier(6)
    answers: list[tuple[int, str]] = []

    def decode() -> None:
        start.wait()
        answer = client.post(f"/api/sessions/{session}/decode")
        answers.append((answer.status_code, answer.text))

    threads = [threading.Thread(target=decode) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert [code for code, _ in answers] == [200] * 6, answers
    folder = client.app.state.orchestrator.store.session_dir(session)
    assert read_video(folder / "video.mp4").shape == (9, 32, 32, 3)
    assert debris(folder) == []
    assert client.get(f"/files/videos/{session}.mp4").status_code == 200


def _write_in_turn(path: str, count: int, seed: int, times: int) -> None:
    for _ in range(times):
        write_mp4(frames(count, seed), path, fps=8)


# Another process writing the same path: it says "ready" once imported, then writes in a loop.
OTHER_WRITER = """
import sys, torch
from arc_fabric_core.media.video import write_mp4
frames = torch.rand(int(sys.argv[2]), 32, 32, 3, generator=torch.Generator().manual_seed(int(sys.argv[3])))
print("ready", flush=True)
for _ in range(int(sys.argv[4])):
    write_mp4(frames, sys.argv[1], fps=8)
"""


@pytest.mark.parametrize("processes", [0, pytest.param(2, marks=pytest.mark.slow)])
def test_concurrent_writers_of_one_path_end_with_one_complete_write(tmp_path: Path, processes: int) -> None:
    # What each writer's video is on its own (x264 is deterministic): the result must be one of them.
    counts = {3: 1, 5: 2, 7: 3, 9: 4}
    alone = {}
    for count, seed in counts.items():
        alone[count] = write_mp4(frames(count, seed), tmp_path / f"alone-{count}.mp4", fps=8).read_bytes()
    path = tmp_path / "out" / "video.mp4"
    path.parent.mkdir()
    errors: list[BaseException] = []

    def writer(count: int, seed: int) -> None:
        try:
            _write_in_turn(str(path), count, seed, 3)
        except BaseException as exc:
            errors.append(exc)

    # Threads of this process and, at the same time, other processes.
    others = [
        subprocess.Popen(
            [sys.executable, "-c", OTHER_WRITER, str(path), str(count), str(counts[count]), "4"],
            env=toy_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for count in (3, 9)[:processes]
    ]
    for p in others:
        assert p.stdout is not None and p.stdout.readline().strip() == "ready", p.communicate()
    threads = [threading.Thread(target=writer, args=item) for item in counts.items()]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    ended = [p.communicate(timeout=120) for p in others]
    assert errors == [] and [p.returncode for p in others] == [0] * processes, (errors, ended)
    assert path.read_bytes() in alone.values()
    assert read_video(path).shape[0] in counts
    assert debris(path.parent) == []


# ---------------------------------------------------------------- a full disk


@pytest.mark.slow
def test_decode_on_a_full_disk_keeps_the_previous_video_and_fails_in_one_line(
    tmp_path: Path, toy_engine: Engine, finished: str
) -> None:
    good = tmp_path / "good.mp4"
    write_mp4(toy_engine.decode(toy_engine.open(finished)), good, fps=8)
    before = good.read_bytes()
    store = str(toy_engine.store.root)
    args = ("sessions", "--store", store, "--device", "cpu", "decode", finished, "--out", str(good))
    res = run_toy_cli(*args, cwd=tmp_path, limit=len(before) // 2)
    assert res.returncode != 0, res.stdout
    line = one_error_line(res.stderr)
    assert str(good) in line and "file too large" in line and "unchanged" in line, line
    assert f"sessions decode {finished}" in line  # how to make it once there is room
    assert "video:" not in res.stdout
    assert good.read_bytes() == before
    assert debris(tmp_path) == []
    # The session is as it was: decoding it again (with room) works.
    assert toy_engine.store.load_doc(finished).status == "completed"


@pytest.mark.slow
def test_generation_on_a_full_disk_fails_in_one_line_and_keeps_the_session(
    tmp_path: Path, full_disk_ffmpeg: str
) -> None:
    out = tmp_path / "out"
    previous = write_mp4(frames(4, 0), out / "video.mp4", fps=8).read_bytes()
    args = [f"{k}={v}" for k, v in PARAMS.items() if k != "prompt"]
    res = run_toy_cli(
        "+model=toy",
        *args,
        "output_dir=out",
        "store_dir=store",
        "device=cpu",
        cwd=tmp_path,
        env=toy_env(IMAGEIO_FFMPEG_EXE=full_disk_ffmpeg),
    )
    assert res.returncode != 0, res.stdout
    line = one_error_line("\n".join(s for s in res.stderr.splitlines() if not s.startswith("step ")))
    assert "video.mp4" in line and "file too large" in line and "sessions decode" in line, line
    assert (out / "video.mp4").read_bytes() == previous
    assert "video:" not in res.stdout
    (session,) = (tmp_path / "store").iterdir()
    from arc_fabric_core.store.files import SessionStore

    assert SessionStore(tmp_path / "store").load_doc(session.name).status == "completed"


def test_a_job_whose_video_cannot_be_written_fails_with_the_reason_and_decode_redoes_it(
    client, full_disk_ffmpeg: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IMAGEIO_FFMPEG_EXE", full_disk_ffmpeg)
    job = wait_job(client, client.post("/api/sessions", json={"model": "toy", "params": PARAMS}).json()["id"])
    assert job["state"] == "failed"
    session = job["session_id"]
    assert "video was not written" in job["error"] and "file too large" in job["error"], job["error"]
    assert f"sessions decode {session}" in job["error"]
    store = client.app.state.orchestrator.store
    assert store.load_doc(session).status == "completed"  # its final latents are kept
    assert not (store.session_dir(session) / "video.mp4").exists()

    # Decoding on the full disk: a JSON answer saying so, not a traceback.
    answer = client.post(f"/api/sessions/{session}/decode")
    assert answer.status_code == 507, answer.text
    assert "file too large" in answer.json()["message"]
    assert debris(store.session_dir(session)) == []

    monkeypatch.delenv("IMAGEIO_FFMPEG_EXE")  # room again
    assert client.post(f"/api/sessions/{session}/decode").status_code == 200
    assert read_video(store.session_dir(session) / "video.mp4").shape == (9, 32, 32, 3)


def test_write_mp4_on_a_full_disk_raises_naming_the_path_and_keeps_the_file(
    tmp_path: Path, full_disk_ffmpeg: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from arc_fabric_core.contract.errors import OutputError

    path = write_mp4(frames(5, 1), tmp_path / "video.mp4", fps=8)
    before = path.read_bytes()
    monkeypatch.setenv("IMAGEIO_FFMPEG_EXE", full_disk_ffmpeg)
    with pytest.raises(OutputError, match=r"video\.mp4: file too large .*the file there is unchanged") as caught:
        write_mp4(frames(9, 2), path, fps=8)
    assert caught.value.out_of_space
    assert path.read_bytes() == before and debris(tmp_path) == []


# ---------------------------------------------------------------- an --out that cannot exist


def test_decode_out_below_a_file_is_one_line_naming_out(
    tmp_path: Path, toy_engine: Engine, finished: str, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    import arc_fabric_core.dispatch.plugins as plugins_module
    from arc_fabric_core.cli.sessions import main

    monkeypatch.setattr(plugins_module, "_plugins", toy_engine.plugins)
    (tmp_path / "notes.txt").write_text("a file, not a folder")
    store = str(toy_engine.store.root)
    with pytest.raises(SystemExit) as ended:
        main(["--store", store, "--device", "cpu", "decode", finished, "--out", str(tmp_path / "notes.txt" / "x.mp4")])
    assert ended.value.code != 0
    line = one_error_line(capsys.readouterr().err)
    assert line.startswith("error: --out: ") and "notes.txt is a file, not a folder" in line, line
    assert (tmp_path / "notes.txt").read_text() == "a file, not a folder"
