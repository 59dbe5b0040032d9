"""Jobs run in worker processes: same latents as in-process, a worker killed mid-job
fails its job with the reason and leaves the session resumable, the next job gets a new
worker — and a worker in a venv of its own (only the core and the toy plugin) agrees."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from arc_fabric_core.contract.errors import InputError
from arc_fabric_core.engine.facade import Engine
from arc_fabric_core.jobs.executors import Lines, SubprocessExecutor, send
from arc_fabric_core.jobs.queue import JobQueue, JobRunner

TOY = Path(__file__).resolve().parents[1] / "examples" / "arc_toy"
PARAMS = {"num_frames": 2, "height": 8, "width": 8, "steps": 6, "seed": 5}


def executor(store: Path, python: str | None = None) -> SubprocessExecutor:
    """Workers with this interpreter and the toy plugin from its folder (it is not installed here)."""
    return SubprocessExecutor(
        store,
        {"toy": python} if python else None,
        device="cpu",
        worker_args=[] if python else ["--plugin", "arc_toy.plugin"],
        environ={} if python else {"PYTHONPATH": os.pathsep.join([str(TOY), os.environ.get("PYTHONPATH", "")])},
    )


def in_process(toy_engine: Engine, **params) -> torch.Tensor:
    session = toy_engine.create("toy", {**PARAMS, **params})
    toy_engine.run(session)
    return toy_engine.final_latents(session)


@pytest.fixture
def queue(tmp_path: Path) -> JobQueue:
    return JobQueue(tmp_path / "jobs.sqlite")


def test_a_worker_process_gives_the_latents_of_an_in_process_run(queue: JobQueue, toy_engine: Engine) -> None:
    work = executor(toy_engine.store.root)
    try:
        runner = JobRunner(queue, executor=work)
        steps: list[int] = []
        lines: list[str] = []
        cache_events: list[dict] = []
        work.subscribe_models(cache_events.append)
        job = queue.submit("generate", {"model": "toy", "params": PARAMS})
        done = runner.run_next(listeners=[lambda p: steps.append(p.step)], on_log=lines.append)
        assert done.state == "succeeded", done.error
        assert steps == [1, 2, 3, 4, 5, 6]
        # The worker's log lines and its cache's events come back; its models show as held.
        assert lines[0] == f"session {done.session_id}: generate with toy/default, steps 0→6 of 6", lines
        assert lines[1].startswith("loading toy/default onto cpu") and lines[2].startswith("loaded toy/default on cpu")
        assert [(e["kind"], e["label"], e["device"]) for e in cache_events] == [
            ("loading", "toy/default", "cpu"),
            ("load", "toy/default", "cpu"),
        ]
        assert [(m["label"], m["state"], m["device"]) for m in work.held_models()] == [("toy/default", "warm", "cpu")]
        assert torch.equal(toy_engine.final_latents(done.session_id), in_process(toy_engine))
        pid = work.pids()[sys.executable]
        # The worker stays: a second job reuses it (its models warm).
        queue.submit("generate", {"model": "toy", "params": {**PARAMS, "seed": 6}})
        assert runner.run_next().state == "succeeded" and work.pids()[sys.executable] == pid
        assert job.id == done.id
    finally:
        work.close()
    assert work.pids() == {}


def test_a_worker_killed_mid_job_fails_the_job_and_the_session_resumes(queue: JobQueue, toy_engine: Engine) -> None:
    work = executor(toy_engine.store.root)
    params = {**PARAMS, "steps": 400}  # long enough that the kill lands mid-run
    try:
        runner = JobRunner(queue, executor=work)
        queue.submit("generate", {"model": "toy", "params": params})

        def kill_at_step_20(progress) -> None:
            if progress.step == 20:
                os.kill(work.pids()[sys.executable], signal.SIGKILL)

        cache_events: list[dict] = []
        work.subscribe_models(cache_events.append)
        failed = runner.run_next(listeners=[kill_at_step_20])
        assert failed.state == "failed"
        # What the dead worker held is reported gone.
        assert work.held_models() == [] and cache_events[-1]["kind"] == "evict"
        assert "killed by SIGKILL" in failed.error and f"session {failed.session_id}" in failed.error
        doc = toy_engine.store.load_doc(failed.session_id)
        # At its last checkpoint the store recorded, mid-run (the writer trails the loop by a few steps).
        assert 0 < doc.step_index < 400 and doc.checkpoints

        # The next job gets a fresh worker and succeeds: here, the interrupted session resumed.
        resumed = queue.requeue(failed.id)
        assert resumed.kind == "resume"
        again = runner.run_next()
        assert again.state == "succeeded", again.error
        assert torch.equal(toy_engine.final_latents(failed.session_id), in_process(toy_engine, steps=400))
    finally:
        work.close()


def test_a_job_error_in_the_worker_fails_the_job_and_keeps_the_worker(queue: JobQueue, toy_engine: Engine) -> None:
    work = executor(toy_engine.store.root)
    try:
        runner = JobRunner(queue, executor=work)
        queue.submit("generate", {"model": "toy", "params": PARAMS})
        assert runner.run_next().state == "succeeded"
        pid = work.pids()[sys.executable]
        queue.submit("generate", {"model": "toy", "params": {**PARAMS, "height": 7}})  # toy wants multiples of 8
        failed = runner.run_next()
        assert failed.state == "failed" and "height" in failed.error
        assert work.pids()[sys.executable] == pid
    finally:
        work.close()


def test_cancel_reaches_a_job_in_a_worker(queue: JobQueue, toy_engine: Engine) -> None:
    work = executor(toy_engine.store.root)
    try:
        job = queue.submit("generate", {"model": "toy", "params": {**PARAMS, "steps": 400}})

        def cancel(progress) -> None:
            if progress.step == 2:
                queue.cancel(job.id)

        done = JobRunner(queue, executor=work).run_next(listeners=[cancel])
        assert done.state == "cancelled", done.error
        doc = toy_engine.store.load_doc(done.session_id)
        assert doc.status == "paused" and 2 <= doc.step_index < 400
    finally:
        work.close()


def test_a_worker_answers_only_its_orchestrator(tmp_path: Path) -> None:
    env = {**os.environ, "ARC_WORKER_TOKEN": "right"}
    command = [sys.executable, "-m", "arc_fabric_core.jobs.worker", "--store", str(tmp_path), "--device", "cpu"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, env=env)
    try:
        assert process.stdout is not None
        port = int(process.stdout.readline().split()[1])
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            assert sock.getpeername()[0] == "127.0.0.1"
            send(sock, {"op": "hello", "token": "wrong"})
            assert Lines(sock).read(timeout=30) == {"ok": False, "error": "bad token"}
    finally:
        process.kill()
        process.wait(10)


@pytest.mark.slow
def test_a_worker_in_its_own_venv_gives_the_same_latents(queue: JobQueue, toy_engine: Engine, toy_env) -> None:
    """The real per-plugin setup: a venv with only the core and the toy plugin (torch from
    the shared base) runs the job; the latents equal this process's."""
    work = executor(toy_engine.store.root, python=str(toy_env.python))
    try:
        queue.submit("generate", {"model": "toy", "params": PARAMS})
        done = JobRunner(queue, executor=work).run_next()
        assert done.state == "succeeded", done.error
        worker = work.workers[str(toy_env.python)]
        assert worker.info["models"] == ["toy"] and worker.info["python"].startswith(str(toy_env.path))
        assert torch.equal(toy_engine.final_latents(done.session_id), in_process(toy_engine))
    finally:
        work.close()


@pytest.mark.slow
def test_jobs_work_finds_the_plugin_env_by_model_name(tmp_path: Path, toy_engine: Engine, toy_env) -> None:
    """`jobs work --executor subprocess` from the command line: the toy job goes to the
    env `env create toy` made (found under $ARC_FABRIC_ENVS by the model's name)."""
    env = {
        **os.environ,
        "ARC_FABRIC_QUEUE": str(tmp_path / "q.sqlite"),
        "ARC_FABRIC_STORE": str(toy_engine.store.root),
        "ARC_FABRIC_ENVS": str(toy_env.path.parent),
    }
    jobs = [sys.executable, "-m", "arc_fabric_core", "jobs"]
    items = [f"{k}={v}" for k, v in PARAMS.items()]
    out = subprocess.run([*jobs, "submit", "generate", "model=toy", *items], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "job 1: queued" in out.stdout
    work = [*jobs, "work", "--executor", "subprocess", "--device", "cpu"]
    out = subprocess.run(work, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    queue = JobQueue(tmp_path / "q.sqlite")
    job = queue.get(1)
    assert "job 1: succeeded" in out.stdout and "1 jobs run" in out.stdout
    assert str(toy_env.python) in out.stderr  # the worker was started with the env's interpreter
    assert torch.equal(toy_engine.final_latents(queue.get(job.id).session_id), in_process(toy_engine))


def test_back_to_back_jobs_reach_a_free_worker(queue: JobQueue, toy_engine: Engine) -> None:
    """The next job is sent the moment the last one ends: the worker must already be free."""
    work = executor(toy_engine.store.root)
    try:
        runner = JobRunner(queue, executor=work)
        for seed in range(12):
            queue.submit("generate", {"model": "toy", "params": {**PARAMS, "steps": 1, "seed": seed}})
        done = runner.run_all()
        assert [j.state for j in done] == ["succeeded"] * 12, [j.error for j in done]
    finally:
        work.close()


def test_cancel_ends_a_worker_whose_step_hangs_and_the_session_resumes_exactly(
    tmp_path: Path, queue: JobQueue, toy_engine: Engine
) -> None:
    """A cancelled job that never reaches its next step (a step that hangs) is stopped
    by ending its worker once the grace period is over: the job is cancelled, its session
    paused at its last checkpoint; the next job gets a new worker, and the resumed
    session ends with the latents of an uninterrupted run."""
    flag = tmp_path / "stall"
    flag.touch()
    tests = Path(__file__).resolve().parent
    work = SubprocessExecutor(
        toy_engine.store.root,
        device="cpu",
        worker_args=["--plugin", "arc_toy.plugin", "--plugin", "stall_plugin"],
        environ={
            "PYTHONPATH": os.pathsep.join([str(TOY), str(tests), os.environ.get("PYTHONPATH", "")]),
            "ARC_TEST_STALL_FILE": str(flag),
            "ARC_TEST_STALL_AT": "3",  # steps 1..3 run, the 4th hangs
        },
        cancel_grace=1.0,
    )
    try:
        runner = JobRunner(queue, executor=work)
        job = queue.submit("generate", {"model": "toy", "params": PARAMS})
        stalled = Path(f"{flag}.stalled")

        def cancel_once_stuck(progress) -> None:
            if progress.step == 3:
                deadline = time.monotonic() + 60
                while not stalled.exists():
                    assert time.monotonic() < deadline, "the worker never reached the hanging step"
                    time.sleep(0.02)
                queue.cancel(job.id)

        lines: list[str] = []
        pid = None
        started = time.monotonic()
        # Without the grace period the job would wait for the step forever: free it after a
        # minute, so that a missing kill fails the assertions below instead of hanging.
        unstick = threading.Timer(60, lambda: flag.unlink(missing_ok=True))
        unstick.start()

        def note_pid(progress) -> None:
            nonlocal pid
            pid = pid or work.pids()[sys.executable]

        done = runner.run_next(listeners=[note_pid, cancel_once_stuck], on_log=lines.append)
        unstick.cancel()
        assert time.monotonic() - started < 60
        assert done.state == "cancelled", done.error
        assert done.error.startswith(f"cancelled at step 3/6; session {done.session_id} is paused there"), done.error
        assert any(f"ending its worker (pid {pid})" in line for line in lines), lines
        assert work.pids() == {}  # the stuck worker is gone
        doc = toy_engine.store.load_doc(done.session_id)
        assert doc.status == "paused" and doc.step_index == 3 and doc.checkpoints[-1].step == 3
        assert not toy_engine.store.is_locked(done.session_id)

        flag.unlink(missing_ok=True)  # steps no longer hang: the session resumes in a new worker
        queue.submit("resume", {"session": done.session_id})
        resumed = runner.run_next()
        assert resumed.state == "succeeded", resumed.error
        assert work.pids()[sys.executable] != pid
        assert torch.equal(toy_engine.final_latents(done.session_id), in_process(toy_engine))
    finally:
        work.close()


def test_the_cancel_grace_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="cancel_grace: must be more than 0 seconds, got 0"):
        SubprocessExecutor(tmp_path, cancel_grace=0)
