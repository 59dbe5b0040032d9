"""The KV-cached block-by-block run equals a run that recomputes full block-causal
attention over every frame without a cache — before and after the window starts
evicting, with the sink in place."""

from __future__ import annotations

import pytest
import torch

from arc_fabric_core.kit.kv_cache import WindowPolicy
from arc_longlive.causal import CausalWan
from arc_longlive.tiny import TRANSFORMER_CONFIG as TINY

SHIFT = 5.0


def warped_sigmas() -> list[float]:
    """LongLive's [1000, 750, 500, 250] through shift 5, then 0."""
    levels = [1.0, 0.75, 0.5, 0.25]
    return [SHIFT * s / (1 + (SHIFT - 1) * s) for s in levels] + [0.0]


def build() -> CausalWan:
    from diffusers import WanTransformer3DModel

    torch.manual_seed(0)
    return CausalWan(WanTransformer3DModel(**TINY).eval())


def generate(
    model: CausalWan,
    policy: WindowPolicy,
    noise: torch.Tensor,
    renoise: torch.Tensor,
    prompt: torch.Tensor,
    cached: bool,
):
    """LongLive's loop: per block, 4 steps predicting x0 and re-noising it to the next
    level, then (cached) the clean block once more at t=0 to write its keys and values."""
    sigmas = warped_sigmas()
    frames, block = noise.shape[2], policy.block_frames
    clean = torch.zeros_like(noise)
    cache = model.new_cache(policy, noise.shape[3], noise.shape[4])
    with torch.no_grad():
        for start in range(0, frames, block):
            end = start + block
            x = noise[:, :, start:end]
            for i in range(4):
                t = torch.tensor(sigmas[i] * 1000)
                if cached:
                    flow = model(x, t, prompt, start, cache)
                else:
                    past = torch.zeros(start)
                    steps = torch.cat([past, t.repeat(block)])
                    everything = torch.cat([clean[:, :, :start], x], 2)
                    flow = model.reference_forward(everything, steps, prompt, policy)[:, :, start:]
                x0 = x - sigmas[i] * flow
                x = x0 if i == 3 else (1 - sigmas[i + 1]) * x0 + sigmas[i + 1] * renoise[i, :, :, start:end]
            clean[:, :, start:end] = x
            if cached:
                model(x, torch.tensor(0.0), prompt, start, cache, write=True)
    return clean, cache


@pytest.mark.parametrize(
    "policy",
    [
        WindowPolicy(block_frames=3, window_frames=12, sink_frames=3),
        WindowPolicy(block_frames=2, window_frames=6, sink_frames=2),
    ],
    ids=["longlive-12-sink-3", "block-2-window-6-sink-2"],
)
def test_the_cached_run_equals_full_recompute_through_eviction(policy: WindowPolicy) -> None:
    model = build()
    frames = policy.block_frames * 6  # well past the window: frames are evicted
    g = torch.Generator().manual_seed(1)
    noise = torch.randn(1, 16, frames, 8, 8, generator=g)
    renoise = torch.randn(3, 1, 16, frames, 8, 8, generator=g)
    prompt = torch.randn(1, 7, 32, generator=g)

    cached, cache = generate(model, policy, noise, renoise, prompt, cached=True)
    recomputed, _ = generate(model, policy, noise, renoise, prompt, cached=False)
    assert torch.allclose(cached, recomputed, atol=1e-5, rtol=0), (cached - recomputed).abs().max()

    # The cache holds the sink and only the frames a next block would see.
    keep = frames + policy.block_frames - (policy.window_frames - policy.sink_frames)
    assert cache.frames == list(range(policy.sink_frames)) + list(range(keep, frames))
    assert cache.nbytes == 2 * 2 * len(cache.frames) * 16 * 24 * 4  # k+v, 2 layers, 16 tokens, 2x12 dims, fp32

    # The window matters: with no eviction the blocks that saw everything agree, later ones differ.
    unlimited = WindowPolicy(policy.block_frames, -1, policy.sink_frames)
    everything, _ = generate(model, unlimited, noise, renoise, prompt, cached=True)
    first_evicting = policy.window_frames  # the first block that no longer sees frame `sink`
    assert torch.allclose(everything[:, :, :first_evicting], cached[:, :, :first_evicting], atol=1e-5, rtol=0)
    assert not torch.allclose(everything[:, :, first_evicting:], cached[:, :, first_evicting:], atol=1e-3)


def test_frames_past_the_rotary_table_are_refused_before_compute() -> None:
    model = build()
    cache = model.new_cache(WindowPolicy(), 8, 8)
    with pytest.raises(Exception, match=r"num_frames.*rotary table"):
        model(torch.zeros(1, 16, 3, 8, 8), torch.tensor(500.0), torch.zeros(1, 7, 32), 30, cache)


def test_a_block_whose_past_is_not_cached_is_refused() -> None:
    model = build()
    cache = model.new_cache(WindowPolicy(), 8, 8)
    with pytest.raises(RuntimeError, match=r"lacks frames \[0, 1, 2\]"):
        model(torch.zeros(1, 16, 3, 8, 8), torch.tensor(500.0), torch.zeros(1, 7, 32), 3, cache)
