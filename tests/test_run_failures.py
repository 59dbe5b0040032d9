"""How runs fail: non-finite latents stop at their step, lost checkpoints are reported in
one line, and a run that fails leaves its session failed with a short reason — never
``created`` or ``running``."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from arc_fabric_core.contract.errors import SessionError
from arc_fabric_core.contract.hookspecs import hookimpl
from arc_fabric_core.contract.schedule import StepContext
from arc_fabric_core.engine.facade import Engine
from arc_fabric_core.store.session import SessionStatus

ROOT = Path(__file__).resolve().parents[1]
TOY = ROOT / "examples" / "arc_toy"
PARAMS = {"num_frames": 4, "height": 16, "width": 16, "steps": 8, "prompt": "bands"}


class NanAt:
    """Makes the model output NaN from step index ``index`` on (a run diverging there)."""

    def __init__(self, index: int) -> None:
        self.index = index

    @hookimpl(wrapper=True)
    def arc_denoise_step(self, step: StepContext) -> Any:
        output = yield
        return torch.full_like(output, float("nan")) if step.index >= self.index else output


def test_non_finite_latents_fail_the_run_at_that_step_and_keep_the_last_finite_checkpoint(
    toy_plugins, toy_engine: Engine
) -> None:
    nan = NanAt(5)  # the step taking the latents from step 5 to step 6
    toy_plugins.register(nan, name="nan")
    session = toy_engine.create("toy", PARAMS)
    with pytest.raises(SessionError, match=r"non-finite \(NaN or inf\) at step 6; its newest checkpoint \(step 5\)"):
        toy_engine.run(session)
    doc = toy_engine.store.load_doc(session.id)
    assert doc.status is SessionStatus.FAILED and "at step 6" in (doc.error or "")
    assert [c.step for c in doc.checkpoints] == [0, 1, 2, 3, 4, 5] and doc.final is None
    for record in doc.checkpoints:  # nothing non-finite was written
        tensors, _ = toy_engine.store.read_tensors(session.id, record)
        assert torch.isfinite(tensors["latents"]).all()

    # Once the cause is gone, the session resumes from step 5 and finishes as a clean run does.
    toy_plugins.unregister(nan)
    steps: list[int] = []
    toy_engine.resume(session.id, listeners=[lambda e: steps.append(e.step)])
    assert steps == [6, 7, 8]
    clean = toy_engine.create("toy", PARAMS)
    toy_engine.run(clean)
    assert torch.equal(toy_engine.final_latents(session.id), toy_engine.final_latents(clean.id))


def test_missing_checkpoints_are_reported_once_and_the_run_resumes_from_the_last_good_one(
    toy_engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    session = toy_engine.create("toy", PARAMS)
    toy_engine.run(session, until=7)
    folder = toy_engine.store.session_dir(session.id) / "checkpoints"
    for step in (3, 4, 5, 6, 7):
        (folder / f"step_{step:05d}.safetensors").unlink()
    with caplog.at_level(logging.WARNING, logger="arc_fabric"):
        steps: list[int] = []
        toy_engine.resume(session.id, listeners=[lambda e: steps.append(e.step)])
    assert steps == [3, 4, 5, 6, 7, 8]
    said = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(said) == 1, said
    lost = f"session {session.id}: the checkpoints at steps 3-7 are missing or corrupt (the newest: "
    assert said[0].startswith(lost)
    assert said[0].endswith("); resuming from step 2") and said[0].count("cannot read") == 1


def test_no_usable_checkpoint_is_one_short_error_in_one_line(toy_engine: Engine) -> None:
    session = toy_engine.create("toy", {**PARAMS, "steps": 20})
    toy_engine.run(session, until=16)
    for path in (toy_engine.store.session_dir(session.id) / "checkpoints").iterdir():
        path.unlink()
    with pytest.raises(SessionError) as caught:
        toy_engine.resume(session.id)
    message = str(caught.value)
    assert "the checkpoints at steps 0-16 are missing or corrupt" in message and "no usable checkpoint" in message
    assert message.count("cannot read") == 1 and "\n" not in message
    doc = toy_engine.store.load_doc(session.id)
    assert doc.status is SessionStatus.FAILED
    assert doc.error is not None and "steps 0-16" in doc.error and len(doc.error) <= 400


class Shouts:
    """A step that fails with a very long message (a plugin dumping its state)."""

    @hookimpl(wrapper=True)
    def arc_denoise_step(self, step: StepContext) -> Any:
        yield
        raise RuntimeError("the model broke:\n" + "a line of its state\n" * 1000)


def test_the_error_kept_in_session_json_is_short(toy_plugins, toy_engine: Engine) -> None:
    toy_plugins.register(Shouts(), name="shouts")
    session = toy_engine.create("toy", PARAMS)
    with pytest.raises(RuntimeError):
        toy_engine.run(session)
    doc = toy_engine.store.load_doc(session.id)
    assert doc.status is SessionStatus.FAILED
    assert doc.error is not None and doc.error.startswith("RuntimeError: the model broke: a line of its state")
    assert len(doc.error) <= 400 and "\n" not in doc.error


def test_a_run_refused_the_lock_leaves_its_session_failed_once_the_holder_is_gone(
    toy_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    session = toy_engine.create("toy", PARAMS)
    store = toy_engine.store
    # A run that really holds it owns the status: a refused run leaves it alone.
    holding = store.lock(session.id)
    with holding, pytest.raises(SessionError, match="being written by a job running in this process"):
        toy_engine.run(toy_engine.open(session.id))
    assert store.load_doc(session.id).status is SessionStatus.CREATED

    real_lock = store.lock
    passing = [True]  # `sessions gc` looks at the session (holding its lock a moment) just as the run asks

    @contextlib.contextmanager
    def lock(session_id: str) -> Iterator[None]:
        if passing:
            passing.clear()
            with real_lock(session_id), real_lock(session_id):  # the run's try is refused
                yield
        else:
            with real_lock(session_id):
                yield

    monkeypatch.setattr(store, "lock", lock)
    with pytest.raises(SessionError, match="being written by a job running in this process"):
        toy_engine.run(session)
    doc = store.load_doc(session.id)
    assert doc.status is SessionStatus.FAILED and "being written by a job running in this process" in (doc.error or "")
    # Nothing ran: it runs in full once the lock is free.
    toy_engine.run(toy_engine.open(session.id))
    assert store.load_doc(session.id).status is SessionStatus.COMPLETED


# A plugin whose model cannot load (out of memory, a broken checkpoint).
BROKEN_LOAD = """
import sys
from arc_fabric_core.contract.hookspecs import hookimpl
from arc_fabric_core.dispatch.plugins import get_plugins
from arc_toy import plugin

class BrokenLoad:
    @hookimpl(wrapper=True)
    def arc_load(self):
        yield
        raise RuntimeError("CUDA out of memory while loading")

get_plugins().register(plugin, name="toy")
get_plugins().register(BrokenLoad(), name="broken")
from arc_fabric_core.cli.main import main
main(sys.argv[1:])
"""


@pytest.mark.slow
def test_a_generation_whose_model_fails_to_load_leaves_no_session_created(tmp_path: Path) -> None:
    path = os.pathsep.join([str(TOY), str(ROOT), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "ARC_FABRIC_LOAD_PLUGINS": "", "PYTHONPATH": path, "HYDRA_FULL_ERROR": "0"}
    args = [f"{k}={v}" for k, v in PARAMS.items() if k != "prompt"]
    res = subprocess.run(
        [sys.executable, "-c", BROKEN_LOAD, "+model=toy", *args, "output_dir=out", "store_dir=store", "device=cpu"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode != 0 and "CUDA out of memory while loading" in res.stderr, res.stderr
    from arc_fabric_core.store.files import SessionStore

    statuses = [d.status for d in SessionStore(tmp_path / "store").load_all()]
    assert SessionStatus.CREATED not in statuses and SessionStatus.RUNNING not in statuses, statuses


@pytest.mark.slow
def test_a_worker_killed_mid_run_leaves_its_session_failed_with_the_reason(tmp_path: Path, toy_engine: Engine) -> None:
    from arc_fabric_core.jobs.executors import SubprocessExecutor
    from arc_fabric_core.jobs.queue import JobQueue, JobRunner

    work = SubprocessExecutor(
        toy_engine.store.root,
        device="cpu",
        worker_args=["--plugin", "arc_toy.plugin"],
        environ={"PYTHONPATH": os.pathsep.join([str(TOY), os.environ.get("PYTHONPATH", "")])},
    )
    queue = JobQueue(tmp_path / "jobs.sqlite")
    try:
        queue.submit("generate", {"model": "toy", "params": {**PARAMS, "steps": 400}})

        def kill_at_step_20(progress: Any) -> None:
            if progress.step == 20:
                os.kill(work.pids()[sys.executable], signal.SIGKILL)

        failed = JobRunner(queue, executor=work).run_next(listeners=[kill_at_step_20])
        assert failed.state == "failed" and "killed by SIGKILL" in failed.error
        doc = toy_engine.store.load_doc(failed.session_id)
        assert doc.status is SessionStatus.FAILED and "killed by SIGKILL" in (doc.error or "")
        assert doc.checkpoints  # resumable from there
    finally:
        work.close()
