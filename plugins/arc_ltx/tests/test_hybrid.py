"""Hybrid schedules on LTX: 2B for the first steps, 13B for the rest (their tiny stand-ins),
in one pass or across the multi-scale passes, equal diffusers' pipelines with the
transformer swapped at the same step."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from arc_fabric_core.dispatch.plugins import get_plugins
from arc_fabric_core.engine.facade import Engine
from arc_fabric_core.engine.hybrid import HybridSpec
from arc_fabric_core.runtime.model_cache import ModelCache
from arc_fabric_core.store.files import SessionStore
from arc_ltx.reference import reference_call_kwargs, reference_multiscale, reference_pipeline


@pytest.fixture(scope="module")
def cache() -> ModelCache:
    return ModelCache(get_plugins())


@pytest.fixture
def engine(tmp_path: Path, cache: ModelCache, monkeypatch: pytest.MonkeyPatch) -> Engine:
    for size in ("2B", "13B"):
        monkeypatch.delenv(f"ARC_LTX_{size}_DISTILLED_WEIGHTS", raising=False)
    return Engine(SessionStore(tmp_path / "store"), device="cpu", cache=cache)


def two_b_then_13b(boundary: float, unit: str = "fraction") -> HybridSpec:
    # The shipped hybrid_ltx_2b_13b schedule; without weights the tiny stand-ins run it.
    return HybridSpec(
        stages=[{"model": "ltx", "variant": "2b-distilled"}, {"model": "ltx", "variant": "13b-distilled"}],
        boundaries=[boundary],
        unit=unit,
        tiny="auto",
    )


def test_single_pass_hand_off_equals_a_transformer_swap(engine: Engine, small: dict) -> None:
    session = engine.create("ltx", small, hybrid=two_b_then_13b(0.5))
    assert [st.ref.variant.name for st in session.stages] == ["tiny", "tiny-13b"]
    assert all(st.stand_in for st in session.stages)
    engine.run(session)
    ours = engine.final_latents(session)
    small_model, large_model = (engine.cache.get(st.ref, engine.device, "auto") for st in session.stages)
    ref = reference_pipeline(small_model)

    def swap(pipe: object, i: int, t: torch.Tensor, kwargs: dict) -> dict:
        if i + 1 == session.stages[0].end:
            pipe.transformer = large_model.pipe.transformer
        return {}

    theirs = ref(**reference_call_kwargs(session.params), output_type="latent", callback_on_step_end=swap).frames
    assert torch.equal(ours, theirs), (ours - theirs).abs().max()
    alone = engine.create("ltx", small, variant="tiny")
    engine.run(alone)
    assert not torch.equal(ours, engine.final_latents(alone))


@pytest.mark.multiscale
def test_multiscale_2b_first_pass_13b_refines(engine: Engine, small: dict) -> None:
    # The 0.9.8 pairing: 2B sketches at the reduced size, 13B upsamples and refines.
    params = {**small, "multiscale": True, "timestep_schedule": "distilled", "timesteps": None}
    session = engine.create("ltx", params, hybrid=two_b_then_13b(7, unit="step"))
    engine.run(session)
    assert session.doc.passes == [7, 3]
    small_model, large_model = (engine.cache.get(st.ref, engine.device, "auto") for st in session.stages)
    theirs = reference_multiscale(small_model, session.params, components_2=large_model)
    assert torch.equal(engine.final_latents(session), theirs)
