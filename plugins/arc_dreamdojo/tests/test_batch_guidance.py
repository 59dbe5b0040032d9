"""batch_guidance on DreamDojo: with guidance (any g > 0) the conditional and the
unconditional (zero text) passes run as one net call of batch 2 per step when batching,
equal to the two passes within rounding; off and auto on a CPU run two; guidance 0 runs
one of batch 1 whatever the setting."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from arc_dreamdojo import plugin

from arc_fabric_core.engine.facade import Engine
from arc_fabric_core.store.files import SessionStore

H, W, STEPS = 32, 48, 3
PARAMS = {"num_frames": 13, "height": H, "width": W, "steps": STEPS, "seed": 2, "guidance": 3.0}  # 1 chunk

# Measured on a 2-core CPU (tiny model, float32, 1 chunk of 3 steps, random actions),
# final latents up to 3.9 in magnitude: max |on - off| 1.4e-6 at guidance 3, 5.4e-7 at
# 0.5 (the batched GEMMs, action MLPs and attention sum in another order). atol 1e-5
# leaves a ~7x margin; other actions move the latents by 0.30 (the last test).
ATOL = 1e-5


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    return Engine(SessionStore(tmp_path / "sessions"), device="cpu")


def frame() -> torch.Tensor:
    return plugin.quantize(torch.rand(3, H, W, generator=torch.Generator().manual_seed(0)))


def actions(chunks: int, seed: int = 1) -> torch.Tensor:
    out = torch.zeros(12 * chunks, 384)
    out[:, :29] = torch.rand(12 * chunks, 29, generator=torch.Generator().manual_seed(seed)) * 2 - 1
    return out


def run_counting(engine: Engine, params: dict, seed: int = 1) -> tuple[torch.Tensor, list[int]]:
    """The final latents, and the batch of every net call of the rollout."""
    inputs = {"image": frame(), "actions": actions(1, seed)}
    session = engine.create("dreamdojo", params, variant="tiny", inputs=inputs)
    net = engine.load(session.ref, "cpu").net
    batches: list[int] = []
    handle = net.register_forward_pre_hook(
        lambda _m, args, kw: batches.append((args[0] if args else kw["latents"]).shape[0]), with_kwargs=True
    )
    try:
        engine.run(session)
    finally:
        handle.remove()
    return engine.final_latents(session), batches


@pytest.mark.parametrize("guidance", [3.0, 0.5])
def test_batched_equals_two_passes_with_one_call_per_step(engine: Engine, guidance: float) -> None:
    params = {**PARAMS, "guidance": guidance}
    off, off_calls = run_counting(engine, {**params, "batch_guidance": "off"})
    on, on_calls = run_counting(engine, {**params, "batch_guidance": "on"})
    assert off_calls == [1] * (2 * STEPS)
    assert on_calls == [2] * STEPS
    assert torch.allclose(on, off, atol=ATOL, rtol=0), (on - off).abs().max()


def test_auto_on_a_cpu_runs_two_passes(engine: Engine) -> None:
    off, _ = run_counting(engine, {**PARAMS, "batch_guidance": "off"})
    auto, calls = run_counting(engine, {**PARAMS, "batch_guidance": "auto"})
    assert calls == [1] * (2 * STEPS)
    assert torch.equal(auto, off)


@pytest.mark.parametrize("setting", ["on", "off", "auto"])
def test_guidance_0_runs_one_call_of_batch_one(engine: Engine, setting: str) -> None:
    _, calls = run_counting(engine, {**PARAMS, "guidance": 0.0, "batch_guidance": setting})
    assert calls == [1] * STEPS


def test_the_tolerance_tells_other_actions_apart(engine: Engine) -> None:
    base, _ = run_counting(engine, {**PARAMS, "batch_guidance": "off"})
    other, _ = run_counting(engine, {**PARAMS, "batch_guidance": "on"}, seed=5)
    assert not torch.allclose(other, base, atol=100 * ATOL, rtol=0)
