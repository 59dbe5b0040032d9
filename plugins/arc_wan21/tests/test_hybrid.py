"""Hybrid schedules on Wan: exact against single-model runs and against diffusers'
two-expert WanPipeline; hand-offs are checkpoints; the memory policy releases the
first model before the second loads when both do not fit."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from arc_fabric_core.contract.errors import InputError
from arc_fabric_core.dispatch.plugins import get_plugins
from arc_fabric_core.engine.facade import Engine
from arc_fabric_core.engine.hybrid import HybridSpec
from arc_fabric_core.runtime.model_cache import ModelCache
from arc_fabric_core.store.files import SessionStore
from arc_wan21.reference import reference_call_kwargs, reference_two_stage


def hybrid(variants: list[str], boundaries: list[float], unit: str = "fraction", **stage: object) -> HybridSpec:
    return HybridSpec(
        stages=[{"model": "wan21", "variant": v, **stage} for v in variants], boundaries=boundaries, unit=unit
    )


@pytest.fixture(scope="module")
def cache() -> ModelCache:
    return ModelCache(get_plugins())


@pytest.fixture
def engine(tmp_path: Path, cache: ModelCache) -> Engine:
    return Engine(SessionStore(tmp_path / "store"), device="cpu", cache=cache)


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
    small_model = engine.cache.get(session.stages[0].ref, engine.device, "auto")
    large_model = engine.cache.get(session.stages[1].ref, engine.device, "auto")
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
    small_model = engine.cache.get(session.stages[0].ref, engine.device, "auto")
    large_model = engine.cache.get(session.stages[1].ref, engine.device, "auto")
    ref = reference_two_stage(small_model, large_model, boundary_ratio=0.9)
    theirs = ref(**reference_call_kwargs(params), guidance_scale_2=2.0, output_type="latent").frames
    assert torch.equal(engine.final_latents(session), theirs)


def test_resume_across_the_hand_off(tmp_path: Path, cache: ModelCache, engine: Engine, small: dict) -> None:
    spec = hybrid(["tiny", "tiny-14b"], [0.5])
    full = run(engine, small, spec)
    for until in (1, 2, 3):  # before, at and after the hand-off at step 2
        partial = engine.create("wan21", small, hybrid=spec)
        engine.run(partial, until=until)
        fresh = Engine(engine.store, device="cpu", cache=ModelCache(get_plugins()))  # as after a crash
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


def test_hand_off_checkpoints_survive_checkpoint_every(tmp_path: Path, cache: ModelCache, small: dict) -> None:
    engine = Engine(SessionStore(tmp_path / "s"), device="cpu", cache=cache, checkpoint_every=3, checkpoint_keep=1)
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
    from arc_fabric_core.runtime.weights_size import folder_bytes

    small_dir = _save_layout(tmp_path / "w13", large=False)
    large_dir = _save_layout(tmp_path / "w14", large=True)
    spec = HybridSpec(
        stages=[{"variant": "1.3b", "weights": str(small_dir)}, {"variant": "14b", "weights": str(large_dir)}],
        boundary=0.5,
    )
    sizes = [sum(folder_bytes(d).values()) for d in (small_dir, large_dir)]

    roomy = ModelCache(get_plugins())  # no budget: both stay warm
    Engine(SessionStore(tmp_path / "a"), device="cpu", cache=roomy).run(
        Engine(SessionStore(tmp_path / "a"), device="cpu", cache=roomy).create("wan21", small, hybrid=spec)
    )
    assert roomy.events == [("load", "wan21/1.3b"), ("load", "wan21/14b")]
    assert roomy.warm_labels() == ["wan21/1.3b", "wan21/14b"]

    tight = ModelCache(get_plugins(), budget_bytes=max(sizes) + min(sizes) // 2)  # one at a time
    engine = Engine(SessionStore(tmp_path / "b"), device="cpu", cache=tight)
    session = engine.create("wan21", small, hybrid=spec)
    engine.run(session)
    assert tight.events == [("load", "wan21/1.3b"), ("evict", "wan21/1.3b"), ("load", "wan21/14b")]
    assert tight.warm_labels() == ["wan21/14b"] and tight.warm_bytes() <= tight.budget_bytes
    # The same video either way.
    assert torch.equal(engine.final_latents(session), roomy_latents(tmp_path / "a"))


def roomy_latents(store_dir: Path) -> torch.Tensor:
    store = SessionStore(store_dir)
    (doc,) = store.load_all()
    tensors, _ = store.read_tensors(doc.id, doc.final)
    return tensors["latents"]


def test_real_models_on_a_fake_two_gpu_box(tmp_path: Path, small: dict) -> None:
    """Two real-layout checkpoints on a fake box with one model's room per GPU: each is
    placed where there is room, the provider counts their real tensors, and an eviction
    gives all of it back."""
    from arc_fabric_core.runtime.devices import FakeProvider
    from arc_fabric_core.runtime.weights_size import folder_bytes

    folders = {"1.3b": _save_layout(tmp_path / "w13", large=False), "14b": _save_layout(tmp_path / "w14", large=True)}
    from arc_wan21.plugin import arc_activation_bytes, plugins_with_wan

    plugins = plugins_with_wan()  # also where the plugin is only on the path (a bare GPU image)
    refs = {v: plugins.model("wan21").resolve(v, str(f)) for v, f in folders.items()}
    params = plugins.model("wan21").params(**small)
    margin = max(arc_activation_bytes(model=ref, params=params) for ref in refs.values())
    weights = max(sum(folder_bytes(f, 4).values()) for f in folders.values())
    provider = FakeProvider(count=2, memory=weights * 3 // 2 + margin)  # room for one model (and its activations)
    cache = ModelCache(plugins, provider=provider)
    engine = Engine(SessionStore(tmp_path / "store"), plugins=plugins, device="auto", dtype="float32", cache=cache)
    for ref in refs.values():
        engine.run(engine.create(ref, small))
    placed = {s.label: s.device for s in cache.states()}
    assert placed == {"wan21/1.3b": "cuda:0", "wan21/14b": "cuda:1"}
    used = {d.id: d.memory_used for d in provider.devices()}
    sizes = {v: cache.state(ref, "float32").bytes for v, ref in refs.items()}
    assert used == {"cuda:0": sizes["1.3b"], "cuda:1": sizes["14b"]}
    for ref in refs.values():
        cache.evict(ref, "float32")
    assert [d.memory_used for d in provider.devices()] == [0, 0]
