"""batch_guidance on LTX. LTXConditionPipeline itself runs CFG's halves as one batch
(unconditional first), so ``auto`` keeps that batch on every device (the parity tests
hold it bit for bit) and ``off`` runs two passes of batch 1, equal within rounding.
Prompts of different lengths are padded, their attention masks hiding the padding."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import torch

from arc_fabric_core.engine.facade import Engine
from arc_fabric_core.store.files import SessionStore

# Measured on a 2-core CPU (tiny model, float32, 4 timesteps, guidance 3), final latents
# up to 4.1 in magnitude: max |on - off| 9.5e-7 (the batched GEMMs and attention sum in
# another order); a negative prompt cut short, padded in the batch: 0.0 against the
# untrimmed batch, 1.1e-6 in two passes. atol 1e-5 leaves a ~10x margin; swapping prompt
# and negative prompt moves the latents by 0.66.
ATOL = 1e-5


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    return Engine(SessionStore(tmp_path), device="cpu")


@contextmanager
def counting(transformer: Any) -> Iterator[list[int]]:
    """The batch of every transformer forward while it runs."""
    batches: list[int] = []
    handle = transformer.register_forward_pre_hook(
        lambda _m, _a, kw: batches.append(kw["hidden_states"].shape[0]), with_kwargs=True
    )
    try:
        yield batches
    finally:
        handle.remove()


def run_counting(engine: Engine, params: dict, trim_negative: bool = False) -> tuple[torch.Tensor, list[int]]:
    session = engine.create("ltx", params, variant="tiny")
    pipe = engine.cache.get(session.ref, engine.device, "auto").pipe
    if trim_negative:
        # The negative prompt's embedding cut to its own tokens: shorter than the prompt's.
        encode = pipe.encode_prompt

        def trimmed(*args: Any, **kwargs: Any) -> tuple[torch.Tensor, ...]:
            embeds, mask, neg, neg_mask = encode(*args, **kwargs)
            n = int(neg_mask.sum())
            assert 0 < n < neg.shape[1]
            return embeds, mask, neg[:, :n], neg_mask[:, :n]

        pipe.encode_prompt = trimmed
    try:
        with counting(pipe.transformer) as batches:
            engine.run(session)
    finally:
        pipe.__dict__.pop("encode_prompt", None)
    return engine.final_latents(session), batches


@pytest.fixture
def cfg(small: dict) -> dict:
    return {**small, "guidance": 3.0}


def test_off_runs_two_passes_equal_to_the_batch(engine: Engine, cfg: dict) -> None:
    on, on_calls = run_counting(engine, {**cfg, "batch_guidance": "on"})
    off, off_calls = run_counting(engine, {**cfg, "batch_guidance": "off"})
    steps = len(cfg["timesteps"])
    assert on_calls == [2] * steps
    assert off_calls == [1] * (2 * steps)
    assert torch.allclose(on, off, atol=ATOL, rtol=0), (on - off).abs().max()


def test_auto_keeps_the_pipelines_batch_on_a_cpu(engine: Engine, cfg: dict) -> None:
    on, _ = run_counting(engine, {**cfg, "batch_guidance": "on"})
    auto, calls = run_counting(engine, {**cfg, "batch_guidance": "auto"})
    assert calls == [2] * len(cfg["timesteps"])
    assert torch.equal(auto, on)


@pytest.mark.parametrize("setting", ["on", "off", "auto"])
def test_without_guidance_one_forward_of_batch_one(engine: Engine, small: dict, setting: str) -> None:
    _, calls = run_counting(engine, {**small, "guidance": 1.0, "batch_guidance": setting})
    assert calls == [1] * len(small["timesteps"])


@pytest.mark.parametrize("setting", ["on", "off"])
def test_a_shorter_negative_prompt_is_padded_under_its_mask(engine: Engine, cfg: dict, setting: str) -> None:
    full, _ = run_counting(engine, {**cfg, "batch_guidance": "on"})
    short, calls = run_counting(engine, {**cfg, "batch_guidance": setting}, trim_negative=True)
    assert calls == ([2] if setting == "on" else [1, 1]) * len(cfg["timesteps"])
    # The tokens cut off were masked anyway: their -10000 bias gives them no weight.
    assert torch.allclose(short, full, atol=ATOL, rtol=0), (short - full).abs().max()
