"""A plugin that owns no model answers a stage instead of the owner (interception), and
keeps state the latents cannot give back (checkpointed plugin state): a step-cache-shaped
plugin that skips every other denoising step, reusing the residual of the last computed
one. With it, a resume at every step and a fork at every step equal an uninterrupted run
with the same plugin, bit for bit."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from arc_fabric_core.contract.hookspecs import hookimpl
from arc_fabric_core.engine.facade import Engine
from arc_fabric_core.store.files import SessionStore

PARAMS = {"num_frames": 2, "height": 8, "width": 8, "steps": 6, "seed": 5}
RESIDUAL = "stepcache.residual"


class SkipOddSteps:
    """The interceptor: at odd steps, the last computed output's residual on these latents."""

    @hookimpl
    def arc_denoise_step(self, latents, step):
        if step.index % 2 == 1 and RESIDUAL in step.checkpointed:
            return latents + step.checkpointed[RESIDUAL]
        return None  # the owner computes this step


class KeepResidual:
    """The wrapper: the owner's calls (only those), and the residual each leaves."""

    def __init__(self) -> None:
        self.calls: list[int] = []

    @hookimpl(wrapper=True)
    def arc_denoise_step(self, latents, step):
        output = yield
        self.calls.append(step.index)
        step.checkpointed[RESIDUAL] = output - latents
        return output


@pytest.fixture
def cached(toy_plugins):
    keep = KeepResidual()
    toy_plugins.register(SkipOddSteps(), name="skip-odd-steps")
    toy_plugins.register(keep, name="keep-residual")
    return toy_plugins, keep


def _engine(store: Path, plugins) -> Engine:
    return Engine(SessionStore(store), plugins=plugins, device="cpu")


def test_an_interceptor_answers_instead_of_the_owner(tmp_path: Path, cached, toy_plugins) -> None:
    plugins, keep = cached
    engine = _engine(tmp_path, plugins)
    session = engine.create("toy", PARAMS)
    engine.run(session)
    assert keep.calls == [0, 2, 4]  # the owner ran the even steps only; the wrapper saw only those
    with_cache = engine.final_latents(session)

    plain = Engine(SessionStore(tmp_path / "plain"), plugins=_toy_only(), device="cpu")
    reference = plain.create("toy", PARAMS)
    plain.run(reference)
    assert not torch.equal(with_cache, plain.final_latents(reference))  # the cache changed the result


def _toy_only():
    from arc_fabric_core.dispatch.plugins import Plugins
    from arc_toy import plugin

    plugins = Plugins(load_entrypoints=False)
    plugins.register(plugin, name="toy")
    return plugins


def test_resume_at_every_step_equals_an_uninterrupted_run(tmp_path: Path, cached) -> None:
    plugins, _ = cached
    engine = _engine(tmp_path, plugins)
    full = engine.create("toy", PARAMS)
    engine.run(full)
    expected = engine.final_latents(full)
    for k in range(1, PARAMS["steps"]):
        session = engine.create("toy", PARAMS)
        engine.run(session, until=k)
        fresh = _engine(tmp_path, plugins)  # a new process, as far as the engine knows
        resumed = fresh.resume(session.id)
        assert torch.equal(fresh.final_latents(resumed), expected), f"resume at step {k}"


def test_a_fork_at_every_step_equals_an_uninterrupted_run(tmp_path: Path, cached) -> None:
    plugins, _ = cached
    engine = _engine(tmp_path, plugins)
    full = engine.create("toy", PARAMS)
    engine.run(full)
    expected = engine.final_latents(full)
    for k in range(PARAMS["steps"]):
        child = _engine(tmp_path, plugins).fork(full.id, k)
        engine.run(child)
        assert torch.equal(engine.final_latents(child), expected), f"fork at step {k}"


def test_the_residual_is_in_the_checkpoint(tmp_path: Path, cached) -> None:
    plugins, _ = cached
    engine = _engine(tmp_path, plugins)
    session = engine.create("toy", PARAMS)
    engine.run(session, until=3)
    doc = engine.store.load_doc(session.id)
    tensors, _ = engine.store.read_tensors(session.id, doc.checkpoints[-1])
    assert "plugin_state." + RESIDUAL in tensors
    assert tensors["plugin_state." + RESIDUAL].shape == tensors["latents"].shape


def test_the_trace_shows_what_an_interceptor_answered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from arc_fabric_core.dispatch.plugins import Plugins
    from arc_toy import plugin

    monkeypatch.setenv("ARC_FABRIC_TRACE_PLUGINS", "1")
    plugins = Plugins(load_entrypoints=False)  # the trace is read when the manager is made
    plugins.register(plugin, name="toy")
    plugins.register(SkipOddSteps(), name="skip-odd-steps")
    plugins.register(KeepResidual(), name="keep-residual")
    engine = _engine(tmp_path, plugins)
    engine.run(engine.create("toy", {**PARAMS, "steps": 2}))
    lines = [line for line in capsys.readouterr().err.splitlines() if "arc_denoise_step" in line]
    asked = [i for i, line in enumerate(lines) if "arc_denoise_step -> skip-odd-steps" in line]
    assert len(asked) == 2  # asked at both steps
    answers = [lines[i + 1].split("<- ")[1] for i in asked]
    # Step 0: passed on (the owner's call is traced next); step 1: its own answer, the owner not called.
    assert answers == ["None (passed on)", "Tensor(1x3x2x8x8 float32)"]
    assert len(lines) == 2 + 2 + 2  # its two calls and answers, the owner's one call and answer
