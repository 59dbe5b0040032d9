"""Hybrid schedules on Wan: exact against single-model runs and against diffusers'
two-expert WanPipeline; hand-offs are checkpoints; the memory policy releases the
first model before the second loads when both do not fit."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from arc_fabric_core.engine import Engine
from arc_fabric_core.errors import InputError
from arc_fabric_core.hybrid import HybridSpec
from arc_fabric_core.model_pool import ModelPool
from arc_fabric_core.plugins import get_plugins
from arc_fabric_core.store import SessionStore
from arc_wan21.reference import reference_call_kwargs, reference_two_stage


def hybrid(variants: list[str], boundaries: list[float], unit: str = "fraction", **stage: object) -> HybridSpec:
    return HybridSpec(
        stages=[{"model": "wan21", "variant": v, **stage} for v in variants], boundaries=boundaries, unit=unit
    )


@pytest.fixture(scope="module")
def pool() -> ModelPool:
    return ModelPool(get_plugins())


@pytest.fixture
def engine(tmp_path: Path, pool: ModelPool) -> Engine:
    return Engine(SessionStore(tmp_path / "store"), device="cpu", pool=pool)


def run(engine: Engine, params: dict, spec: HybridSpec | None = None, variant: str = "tiny") -> torch.Tensor:
    session = engine.create("wan21", params, variant=variant, hybrid=spec)
    engine.run(session)
    return engine.final_latents(session)


@pytest.mark.parametrize(
    "spec",
    [
        hybrid(["tiny", "tiny"], [0.5]),
        hybrid(["tiny", "tiny", "tiny"], [1, 3], unit="step"),
        hybrid(["tiny", "tiny"], [0.9], unit="timestep"),
        hybrid(["tiny", "tiny"], [0.8], unit="sigma"),
    ],
    ids=["fraction", "three-stages", "timestep", "sigma"],
)
def test_same_model_hybrid_equals_single_model(engine: Engine, small: dict, spec: HybridSpec) -> None:
    # UniPC carries a history of model outputs across the hand-off: it must not be reset.
    assert torch.equal(run(engine, small, spec), run(engine, small))


@pytest.mark.parametrize("boundary", [0.95, 0.8])
def test_timestep_boundary_equals_wan_pipeline_with_transformer_2(engine: Engine, small: dict, boundary: float) -> None:
    params = {**small, "steps": 6}
    session = engine.create("wan21", params, hybrid=hybrid(["tiny", "tiny-14b"], [boundary], unit="timestep"))
    engine.run(session)
    ours = engine.final_latents(session)
    ends = [st.end for st in session.stages]
    assert 0 < ends[0] < 6 and ends[1] == 6, ends  # both experts really ran
    small_model = engine.pool.get(session.stages[0].ref, engine.device, "auto")
    large_model = engine.pool.get(session.stages[1].ref, engine.device, "auto")
    ref = reference_two_stage(small_model, large_model, boundary_ratio=boundary)
    theirs = ref(**reference_call_kwargs(params), output_type="latent").frames
    assert torch.equal(ours, theirs), (ours - theirs).abs().max()
    # And the hand-off mattered: the small model alone gives another video.
    assert not torch.equal(ours, run(engine, params))


def test_stage_guidance_equals_guidance_scale_2(engine: Engine, small: dict) -> None:
    params = {**small, "steps": 6}
    spec = HybridSpec(
        stages=[{"variant": "tiny"}, {"variant": "tiny-14b", "guidance": 2.0}], boundary=0.9, unit="timestep"
    )
    session = engine.create("wan21", params, hybrid=spec)
    engine.run(session)
    small_model = engine.pool.get(session.stages[0].ref, engine.device, "auto")
    large_model = engine.pool.get(session.stages[1].ref, engine.device, "auto")
    ref = reference_two_stage(small_model, large_model, boundary_ratio=0.9)
    theirs = ref(**reference_call_kwargs(params), guidance_scale_2=2.0, output_type="latent").frames
    assert torch.equal(engine.final_latents(session), theirs)


def test_resume_across_the_hand_off(tmp_path: Path, pool: ModelPool, engine: Engine, small: dict) -> None:
    spec = hybrid(["tiny", "tiny-14b"], [0.5])
    full = run(engine, small, spec)
    for until in (1, 2, 3):  # before, at and after the hand-off at step 2
        partial = engine.create("wan21", small, hybrid=spec)
        engine.run(partial, until=until)
        fresh = Engine(engine.store, device="cpu", pool=ModelPool(get_plugins()))  # as after a crash
        resumed = fresh.resume(partial.id)
        assert torch.equal(fresh.final_latents(resumed), full), f"resume at step {until} differs"


def test_fork_at_the_hand_off_with_another_second_stage(engine: Engine, small: dict) -> None:
    parent = engine.create("wan21", small, hybrid=hybrid(["tiny", "tiny"], [0.5]))
    engine.run(parent)
    boundary = parent.stages[0].end
    assert boundary == 2 and any(c.step == boundary for c in parent.doc.checkpoints)
    child = engine.fork(parent.id, step=boundary, hybrid=hybrid(["tiny", "tiny-14b"], [boundary], unit="step"))
    engine.run(child)
    # The fork ran only the large model, from the parent's hand-off checkpoint ...
    assert [st.ref.variant.name for st in child.stages] == ["tiny", "tiny-14b"]
    assert child.doc.overrides["stages"] == "wan21/tiny > wan21/tiny-14b"
    # ... and equals the hybrid run with that second stage from the start.
    assert torch.equal(engine.final_latents(child), run(engine, small, hybrid(["tiny", "tiny-14b"], [0.5])))


def test_fork_may_not_rewrite_history(engine: Engine, small: dict) -> None:
    parent = engine.create("wan21", small, hybrid=hybrid(["tiny", "tiny"], [0.5]))
    engine.run(parent)
    with pytest.raises(InputError, match="history"):
        engine.fork(parent.id, step=3, hybrid=hybrid(["tiny", "tiny-14b"], [1], unit="step"))


def test_hand_off_checkpoints_survive_checkpoint_every(tmp_path: Path, pool: ModelPool, small: dict) -> None:
    engine = Engine(SessionStore(tmp_path / "s"), device="cpu", pool=pool, checkpoint_every=3, checkpoint_keep=1)
    session = engine.create("wan21", {**small, "steps": 8}, hybrid=hybrid(["tiny", "tiny-14b"], [0.25]))
    engine.run(session)
    # The first step and the hand-off at 2 are kept whatever checkpoint_keep says; 3 and 6 are not.
    assert {c.step for c in session.doc.checkpoints} == {0, 2, 8}


def _save_layout(folder: Path, large: bool) -> Path:
    from arc_wan21.tiny import build_tiny_pipeline

    with torch.random.fork_rng(devices=[]):
        build_tiny_pipeline(large=large).save_pretrained(folder)
    return folder


def test_memory_policy_releases_the_first_model_before_the_second_loads(tmp_path: Path, small: dict) -> None:
    from arc_fabric_core.weights_size import folder_bytes

    small_dir = _save_layout(tmp_path / "w13", large=False)
    large_dir = _save_layout(tmp_path / "w14", large=True)
    spec = HybridSpec(
        stages=[{"variant": "1.3b", "weights": str(small_dir)}, {"variant": "14b", "weights": str(large_dir)}],
        boundary=0.5,
    )
    sizes = [sum(folder_bytes(d).values()) for d in (small_dir, large_dir)]

    roomy = ModelPool(get_plugins())  # no budget: both stay warm
    Engine(SessionStore(tmp_path / "a"), device="cpu", pool=roomy).run(
        Engine(SessionStore(tmp_path / "a"), device="cpu", pool=roomy).create("wan21", small, hybrid=spec)
    )
    assert roomy.events == [("load", "wan21/1.3b"), ("load", "wan21/14b")]
    assert roomy.warm_labels() == ["wan21/1.3b", "wan21/14b"]

    tight = ModelPool(get_plugins(), budget_bytes=max(sizes) + min(sizes) // 2)  # one at a time
    engine = Engine(SessionStore(tmp_path / "b"), device="cpu", pool=tight)
    session = engine.create("wan21", small, hybrid=spec)
    engine.run(session)
    assert tight.events == [("load", "wan21/1.3b"), ("release", "wan21/1.3b"), ("load", "wan21/14b")]
    assert tight.warm_labels() == ["wan21/14b"] and tight.warm_bytes() <= tight.budget_bytes
    # The same video either way.
    assert torch.equal(engine.final_latents(session), roomy_latents(tmp_path / "a"))


def roomy_latents(store_dir: Path) -> torch.Tensor:
    store = SessionStore(store_dir)
    (doc,) = store.load_all()
    tensors, _ = store.read_tensors(doc.id, doc.final)
    return tensors["latents"]
