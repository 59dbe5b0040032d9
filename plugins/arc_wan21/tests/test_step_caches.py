"""The step caches on the tiny Wan: each skips steps, stays close to the uncached run, and a
resume or a fork at any step equals the uninterrupted cached run bit for bit.

The tiny random transformer changes a lot from step to step, so the settings are loose
(fbc threshold 0.5, magcache threshold 0.06 with ratios estimated online, taylorseer
every second step): each skips a third of the transformer calls or more.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from arc_fabric_core.dispatch.plugins import Plugins
from arc_fabric_core.engine.facade import Engine
from arc_fabric_core.runtime.step_caches import plugin as caches
from arc_fabric_core.runtime.step_caches.plugin import counts
from arc_fabric_core.store.files import SessionStore
from arc_wan21 import plugin as wan

STEPS = 6
CACHES = {
    "fbc": {"name": "fbc", "threshold": 0.5, "warmup": 1},
    "magcache": {"name": "magcache", "threshold": 0.06, "max_skips": 2, "retention": 0.2},
    "taylorseer": {"name": "taylorseer", "interval": 2, "order": 1, "warmup": 1, "cooldown": 1},
}
# Mean absolute difference from the uncached final latents, relative to their mean
# magnitude, allowed on the tiny model (measured: about 0.01-0.02).
CLOSE = 0.05


@pytest.fixture(scope="module")
def plugins() -> Plugins:
    plugins = Plugins(load_entrypoints=False)
    plugins.register(wan, name="wan21")
    plugins.register(caches, name="step_caches")
    return plugins


@pytest.fixture
def params(small: dict) -> dict:
    return {**small, "steps": STEPS}


def engine_at(store: Path, plugins: Plugins) -> Engine:
    return Engine(SessionStore(store), plugins=plugins, device="cpu")


def run(engine: Engine, params: dict, until: int | None = None):
    session = engine.create("wan21", params, variant="tiny")
    engine.run(session, until=until)
    return session


def state_at(engine: Engine, session_id: str, step: int | None = None) -> dict[str, torch.Tensor]:
    """The tensors of a session's checkpoint at ``step`` (default: its last)."""
    doc = engine.store.load_doc(session_id)
    record = doc.checkpoints[-1] if step is None else next(c for c in doc.checkpoints if c.step == step)
    tensors, _ = engine.store.read_tensors(session_id, record)
    return tensors


def cache_counts(engine: Engine, session_id: str, step: int | None = None) -> tuple[int, int]:
    prefix = "plugin_state."
    tensors = state_at(engine, session_id, step)
    return counts({k.removeprefix(prefix): v for k, v in tensors.items() if k.startswith(prefix)})


class CountStacks:
    """Counts the transformer calls whose last block ran (the whole stack)."""

    def __init__(self, engine: Engine, session) -> None:
        transformer = engine.cache.get(session.ref, engine.device, "auto").transformer
        self.calls = 0
        self.handle = transformer.blocks[-1].register_forward_hook(self._count)

    def _count(self, *_: object) -> None:
        self.calls += 1

    def __enter__(self) -> CountStacks:
        return self

    def __exit__(self, *_: object) -> None:
        self.handle.remove()


@pytest.mark.parametrize("name", list(CACHES))
def test_the_cache_skips_steps_and_stays_close(tmp_path: Path, plugins: Plugins, params: dict, name: str) -> None:
    engine = engine_at(tmp_path, plugins)
    plain = engine.final_latents(run(engine, params).id)
    session = run(engine, {**params, "cache": CACHES[name]})
    cached = engine.final_latents(session.id)
    ran, skipped = cache_counts(engine, session.id)
    assert ran + skipped == 2 * STEPS  # cond and uncond at every step
    assert skipped >= 4 and ran >= 2, (ran, skipped)  # a third of the calls or more
    assert not torch.equal(cached, plain)
    difference = ((cached - plain).abs().mean() / plain.abs().mean()).item()
    assert difference < CLOSE, difference
    recorded = engine.store.load_doc(session.id).params["cache"]
    assert {k: recorded[k] for k in CACHES[name]} == CACHES[name]  # with the defaults of the rest


@pytest.mark.parametrize("name", list(CACHES))
def test_resume_at_every_step_equals_the_uninterrupted_run(
    tmp_path: Path, plugins: Plugins, params: dict, name: str
) -> None:
    cached = {**params, "cache": CACHES[name]}
    engine = engine_at(tmp_path, plugins)
    full = run(engine, cached)
    expected = engine.final_latents(full.id)
    for k in range(1, STEPS):
        session = run(engine, cached, until=k)
        fresh = engine_at(tmp_path, plugins)  # a new process, as far as the engine knows
        resumed = fresh.resume(session.id)
        assert torch.equal(fresh.final_latents(resumed.id), expected), f"{name}: resume at step {k}"
        assert cache_counts(fresh, resumed.id) == cache_counts(engine, full.id)


@pytest.mark.parametrize("name", list(CACHES))
def test_a_fork_at_every_step_equals_the_uninterrupted_run(
    tmp_path: Path, plugins: Plugins, params: dict, name: str
) -> None:
    engine = engine_at(tmp_path, plugins)
    full = run(engine, {**params, "cache": CACHES[name]})
    expected = engine.final_latents(full.id)
    for k in range(STEPS):
        child = engine.fork(full.id, k)
        engine.run(child)
        assert torch.equal(engine.final_latents(child.id), expected), f"{name}: fork at step {k}"


@pytest.mark.parametrize("name", list(CACHES))
def test_a_fork_without_the_cache_runs_every_remaining_step(
    tmp_path: Path, plugins: Plugins, params: dict, name: str
) -> None:
    engine = engine_at(tmp_path, plugins)
    full = run(engine, {**params, "cache": CACHES[name]})
    k = 3
    child = engine.fork(full.id, k, {"cache": None})
    doc = engine.store.load_doc(child.id)
    # No cache is the default: the document leaves it out of the params, its overrides say it.
    assert "cache" not in doc.params and doc.overrides == {"cache": None}
    with CountStacks(engine, child) as stacks:
        engine.run(child)
    assert stacks.calls == 2 * (STEPS - k)
    assert torch.equal(state_at(engine, child.id, k)["latents"], state_at(engine, full.id, k)["latents"])
    assert cache_counts(engine, child.id) == cache_counts(engine, full.id, k)  # nothing more skipped
    assert not torch.equal(engine.final_latents(child.id), engine.final_latents(full.id))


def test_a_fork_may_turn_a_cache_on(tmp_path: Path, plugins: Plugins, params: dict) -> None:
    engine = engine_at(tmp_path, plugins)
    plain = run(engine, params)
    child = engine.fork(plain.id, 2, {"cache": CACHES["taylorseer"]})
    engine.run(child)
    ran, skipped = cache_counts(engine, child.id)
    assert ran + skipped == 2 * (STEPS - 2) and skipped > 0
    again = engine.fork(plain.id, 2, {"cache": CACHES["taylorseer"]})
    engine.run(again)
    assert torch.equal(engine.final_latents(again.id), engine.final_latents(child.id))


def test_without_guidance_one_call_per_step(tmp_path: Path, plugins: Plugins, params: dict) -> None:
    engine = engine_at(tmp_path, plugins)
    session = run(engine, {**params, "guidance": 1.0, "cache": CACHES["fbc"]})
    ran, skipped = cache_counts(engine, session.id)
    assert ran + skipped == STEPS and skipped > 0


def test_batched_guidance_keeps_the_cache_exact(tmp_path: Path, plugins: Plugins, params: dict) -> None:
    """Whether or not the model batches cond and uncond into one call, the cache decides
    per call and a resume stays exact."""
    cached = {**params, "batch_guidance": "on", "cache": CACHES["magcache"]}
    engine = engine_at(tmp_path, plugins)
    full = run(engine, cached)
    ran, skipped = cache_counts(engine, full.id)
    assert ran + skipped in (STEPS, 2 * STEPS) and skipped > 0
    session = run(engine, cached, until=3)
    fresh = engine_at(tmp_path, plugins)
    assert torch.equal(fresh.final_latents(fresh.resume(session.id).id), engine.final_latents(full.id))


def test_the_cache_state_starts_afresh_with_another_cache(tmp_path: Path, plugins: Plugins, params: dict) -> None:
    engine = engine_at(tmp_path, plugins)
    full = run(engine, {**params, "cache": CACHES["fbc"]})
    child = engine.fork(full.id, 3, {"cache": CACHES["magcache"]})
    engine.run(child)
    keys = {k for k in state_at(engine, child.id) if k.startswith("plugin_state.stepcache.")}
    assert not [k for k in keys if ".fbc." in k] and [k for k in keys if ".magcache." in k]


@pytest.mark.slow
def test_the_command_line_runs_a_cache(tmp_path: Path) -> None:
    import json

    from arc_fabric_core.media.video import read_video
    from arc_fabric_core.testing.cli import run_cli

    out = tmp_path / "run"
    args = ("+model=wan21", "num_frames=9", "height=32", "width=32", "steps=4", "cache=fbc", "cache.threshold=0.8")
    res = run_cli(*args, f"output_dir={out}", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert read_video(out / "video.mp4").shape == (9, 32, 32, 3)
    (session,) = (tmp_path / "outputs" / "sessions").iterdir()
    doc = json.loads((session / "session.json").read_text())
    assert doc["params"]["cache"] == {"name": "fbc", "threshold": 0.8, "warmup": 1}
    plugins = run_cli("plugins", cwd=tmp_path)
    assert plugins.returncode == 0, plugins.stderr
    listed = {p["name"]: p for p in json.loads(plugins.stdout)}
    # The core's caches are listed with the models that take them, not as a plugin.
    assert "step_caches" not in listed
    (wan,) = listed["wan21"]["models"]
    assert wan["caches"] == ["fbc", "magcache", "taylorseer"]
