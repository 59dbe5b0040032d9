"""The persisted job queue: order, cancel, pause, restart, and the runner on real sessions."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from arc_fabric_core.contract.errors import InputError
from arc_fabric_core.engine.facade import Engine
from arc_fabric_core.jobs.queue import JobQueue, JobRunner, JobState

PARAMS = {"num_frames": 2, "height": 8, "width": 8, "steps": 6}


def generate(priority: int = 0, **params) -> tuple[str, dict, int]:
    return "generate", {"model": "toy", "params": {**PARAMS, **params}}, priority


@pytest.fixture
def queue(tmp_path: Path) -> JobQueue:
    return JobQueue(tmp_path / "jobs.sqlite")


def test_priority_first_then_submission_order(queue: JobQueue) -> None:
    low = queue.submit(*generate(0))
    high = queue.submit(*generate(5))
    low2 = queue.submit(*generate(0))
    assert [queue.claim().id for _ in range(3)] == [high.id, low.id, low2.id]
    assert queue.claim() is None


def test_states_and_timestamps(queue: JobQueue, toy_engine: Engine) -> None:
    job = queue.submit(*generate(prompt="a"))
    assert job.state == "queued" and job.created_at and job.started_at is None
    done = JobRunner(queue, toy_engine).run_next()
    assert done is not None and done.state == "succeeded" and done.error is None
    assert done.created_at <= done.started_at <= done.finished_at
    assert toy_engine.store.load_doc(done.session_id).status == "completed"
    with pytest.raises(InputError, match="succeeded, not running"):
        queue.finish(job.id, JobState.FAILED)


def test_a_generate_job_runs_a_hybrid_schedule(queue: JobQueue, toy_engine: Engine) -> None:
    schedule = {"stages": [{}, {"guidance": 2.0}], "boundary": 0.5}
    job = queue.submit("generate", {"model": "toy", "params": PARAMS, "schedule": schedule})
    done = JobRunner(queue, toy_engine).run_next()
    assert done is not None and done.state == "succeeded", done
    doc = toy_engine.store.load_doc(job_session(queue, job.id))
    assert [(st.end_step, st.guidance) for st in doc.stages] == [(3, None), (6, 2.0)]


def job_session(queue: JobQueue, job_id: int) -> str:
    session = queue.get(job_id).session_id
    assert session is not None
    return session


def test_bad_jobs_are_refused_on_submit(queue: JobQueue) -> None:
    with pytest.raises(InputError, match="unknown job kind 'paint'"):
        queue.submit("paint", {})
    with pytest.raises(InputError) as info:
        queue.submit("fork", {"session": "x"})
    assert info.value.field == "payload.step"
    with pytest.raises(InputError) as info:
        queue.submit("resume", {"session": "x", "colour": 1})
    assert info.value.field == "payload.colour"
    assert queue.list() == []


def test_a_failing_job_records_why_and_the_runner_goes_on(queue: JobQueue, toy_engine: Engine) -> None:
    bad = queue.submit("resume", {"session": "no-such-session"})
    good = queue.submit(*generate())
    runner = JobRunner(queue, toy_engine)
    assert [j.id for j in runner.run_all()] == [bad.id, good.id]
    assert queue.get(bad.id).state == "failed" and "no-such-session" in queue.get(bad.id).error
    assert queue.get(good.id).state == "succeeded"


def test_cancel_a_queued_job(queue: JobQueue) -> None:
    job = queue.submit(*generate())
    assert queue.cancel(job.id).state == "cancelled"
    assert queue.claim() is None
    with pytest.raises(InputError, match="already cancelled"):
        queue.cancel(job.id)
    with pytest.raises(InputError, match="no job 99"):
        queue.cancel(99)


def test_cancel_a_running_job_stops_at_a_step_with_its_session_checkpointed(
    queue: JobQueue, toy_engine: Engine
) -> None:
    job = queue.submit(*generate())

    def cancel_after_step_2(event) -> None:
        if event.step == 2:
            queue.cancel(job.id)

    done = JobRunner(queue, toy_engine).run_next(listeners=[cancel_after_step_2])
    assert done.state == "cancelled" and "cancelled at step 2/6" in done.error
    doc = toy_engine.store.load_doc(done.session_id)
    assert doc.status == "paused" and doc.step_index == 2  # stopped at the boundary right after the request
    # The session resumes from there to the same result as an uninterrupted run.
    resumed = queue.submit("resume", {"session": done.session_id})
    assert JobRunner(queue, toy_engine).run_next().id == resumed.id
    full = toy_engine.create("toy", PARAMS)
    toy_engine.run(full)
    assert torch.equal(toy_engine.final_latents(done.session_id), toy_engine.final_latents(full))


def test_pausing_the_queue(queue: JobQueue, toy_engine: Engine) -> None:
    queue.submit(*generate())
    queue.pause()
    assert queue.paused and JobRunner(queue, toy_engine).run_next() is None
    queue.unpause()
    assert JobRunner(queue, toy_engine).run_next().state == "succeeded"


WORKER = textwrap.dedent(
    """
    import sys
    from arc_fabric_core.jobs.queue import JobQueue
    queue = JobQueue(sys.argv[1])
    job = queue.claim()
    queue.attach_session(job.id, sys.argv[2])
    # ... and the worker dies mid-job, without a word
    """
)


def test_the_queue_survives_a_restart(tmp_path: Path, toy_engine: Engine, toy_plugins) -> None:
    path = tmp_path / "jobs.sqlite"
    first = JobQueue(path)
    running = first.submit(*generate(priority=1))
    waiting = first.submit(*generate(seed=4))
    session = toy_engine.create("toy", PARAMS)
    toy_engine.run(session, until=2)
    subprocess.run([sys.executable, "-c", WORKER, str(path), session.id], check=True, timeout=60)
    first.close()

    again = JobQueue(path)
    assert again.recovered == [running.id]
    interrupted = again.get(running.id)
    assert interrupted.state == "interrupted" and "last checkpoint" in interrupted.error
    assert again.get(waiting.id).state == "queued"
    runner = JobRunner(again, Engine(toy_engine.store, plugins=toy_plugins, device="cpu"))
    assert runner.run_next().id == waiting.id  # queued jobs run after the restart

    requeued = again.requeue(running.id)
    assert requeued.kind == "resume" and requeued.payload == {"session": session.id}
    assert runner.run_next().state == "succeeded"
    full = toy_engine.create("toy", PARAMS)
    toy_engine.run(full)
    assert torch.equal(toy_engine.final_latents(session.id), toy_engine.final_latents(full))


def test_opening_the_queue_leaves_a_live_workers_job_running(queue: JobQueue) -> None:
    job = queue.submit(*generate())
    queue.claim()  # claimed by this very process, which is alive
    other = JobQueue(queue.path)  # e.g. `jobs list` in another terminal
    assert other.recovered == [] and other.get(job.id).state == "running"


def test_a_decode_job_writes_the_video_with_the_engine_of_its_executor(queue: JobQueue, toy_engine: Engine) -> None:
    from arc_fabric_core.media.video import read_video

    session = toy_engine.create("toy", PARAMS)
    toy_engine.run(session)
    preview = queue.submit("decode", {"session": session.id, "step": 2})
    final = queue.submit("decode", {"session": session.id})
    assert preview.session_id == session.id  # the session it works on is known from the start
    ends: list[tuple[int, int, int]] = []
    lines: list[str] = []
    runner = JobRunner(queue, toy_engine)

    def on_end(job, outcome, error) -> None:
        assert error is None, error
        ends.append((job.id, outcome.step, outcome.total))

    assert runner.run_next(on_end=on_end, on_log=lines.append).state == "succeeded"
    assert runner.run_next(on_end=on_end).state == "succeeded"
    assert ends == [(preview.id, 2, 6), (final.id, 6, 6)]
    folder = toy_engine.store.session_dir(session.id)
    assert read_video(folder / "video-step2.mp4").shape[0] == 2 and read_video(folder / "video.mp4").shape[0] == 2
    assert lines[0] == f"session {session.id}: decode of step 2 of 6 with toy/default", lines
    assert lines[-1].startswith("wrote video-step2.mp4 (")


def test_a_failed_decode_job_requeues_as_a_decode(queue: JobQueue, toy_engine: Engine) -> None:
    missing = "20261127-044059-1d676c07"
    job = queue.submit("decode", {"session": missing, "step": 1})
    failed = JobRunner(queue, toy_engine).run_next()
    assert failed.state == "failed" and missing in failed.error and "not found" in failed.error, failed.error
    again = queue.requeue(job.id)
    assert (again.kind, again.payload) == ("decode", {"session": missing, "step": 1})  # never a resume
