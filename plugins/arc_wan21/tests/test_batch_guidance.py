"""batch_guidance on Wan: one transformer call of batch 2 per step equals the two passes
(within rounding), off and auto-on-a-CPU run two of batch 1, and no guidance runs one."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from arc_fabric_core.engine.facade import Engine
from arc_fabric_core.store.files import SessionStore


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    return Engine(SessionStore(tmp_path), device="cpu")


def run_counting(engine: Engine, params: dict) -> tuple[torch.Tensor, list[int]]:
    """The final latents, and the batch of every transformer forward of the run."""
    session = engine.create("wan21", params, variant="tiny")
    transformer = engine.cache.get(session.ref, engine.device, "auto").transformer
    batches: list[int] = []
    handle = transformer.register_forward_pre_hook(
        lambda _m, _a, kw: batches.append(kw["hidden_states"].shape[0]), with_kwargs=True
    )
    try:
        engine.run(session)
    finally:
        handle.remove()
    return engine.final_latents(session), batches


def test_batched_equals_two_passes_with_one_forward_per_step(engine: Engine, small: dict) -> None:
    off, off_calls = run_counting(engine, {**small, "batch_guidance": "off"})
    on, on_calls = run_counting(engine, {**small, "batch_guidance": "on"})
    steps = small["steps"]
    assert off_calls == [1] * (2 * steps)
    assert on_calls == [2] * steps
    # Measured on a 2-core CPU (tiny model, float32, 4 steps, guidance 5): max |on - off|
    # of the final latents 2.5e-6, latents up to 3.6 in magnitude: the batched GEMMs and
    # attention sum in another order. atol 2e-5 gives an 8x margin and still tells a
    # swapped prompt and negative prompt (7e-2 off; the test below) from rounding.
    assert torch.allclose(on, off, atol=2e-5, rtol=0), (on - off).abs().max()


def test_auto_on_a_cpu_runs_two_passes(engine: Engine, small: dict) -> None:
    off, _ = run_counting(engine, {**small, "batch_guidance": "off"})
    auto, calls = run_counting(engine, {**small, "batch_guidance": "auto"})
    assert calls == [1] * (2 * small["steps"])
    assert torch.equal(auto, off)


@pytest.mark.parametrize("setting", ["on", "off", "auto"])
def test_without_guidance_one_forward_of_batch_one(engine: Engine, small: dict, setting: str) -> None:
    _, calls = run_counting(engine, {**small, "guidance": 1.0, "batch_guidance": setting})
    assert calls == [1] * small["steps"]


def test_a_swapped_half_would_be_caught(engine: Engine, small: dict) -> None:
    """The tolerance above means something: guidance pushed the other way is far off."""
    off, _ = run_counting(engine, {**small, "batch_guidance": "off"})
    swapped, _ = run_counting(engine, {**small, "prompt": small["negative_prompt"], "negative_prompt": small["prompt"]})
    assert not torch.allclose(swapped, off, atol=2e-5 * 100, rtol=0)
