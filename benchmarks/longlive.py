"""LongLive's block loop: per-block latency and frames per second, KV-cached vs full
recompute, on random-weight causal Wans (the cost of a block does not depend on the
weights' values).

    python benchmarks/longlive.py --preset tiny --blocks 8            # CPU
    python benchmarks/longlive.py --preset mid --blocks 8             # CPU, ~Wan-shaped
    python benchmarks/longlive.py --preset 1.3b --blocks 10 --device cuda --uncached-blocks 4
                                                                      # the published size, bf16, 480x832

A block is LongLive's: 3 latent frames, 4 denoising steps (the cached arm then runs the
clean block once more at t=0 to write its keys and values). The uncached arm recomputes
every earlier frame at each step with the same block-causal visibility (sink + window):
what a model without a KV cache must do. Frames per second count the pixel frames a
block becomes (9 for the first, 12 after) over its transformer time; the text encoder and
the VAE decode are not timed. LongLive's own claim: 20.7 FPS on one H100.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from wan_random import CPU_MID, WAN_1_3B

TINY = dict(num_attention_heads=2, attention_head_dim=12, text_dim=32, ffn_dim=32, num_layers=2, rope_max_seq_len=64)
PRESETS: dict[str, dict[str, Any]] = {
    # transformer config, latent height x width, prompt tokens
    "tiny": {"transformer": TINY, "latent": (8, 8), "tokens": 16},
    "mid": {"transformer": CPU_MID, "latent": (16, 16), "tokens": 64},
    "1.3b": {"transformer": WAN_1_3B, "latent": (60, 104), "tokens": 512},  # 480x832, 1560 tokens a frame
}


def build(preset: dict[str, Any], device: torch.device, dtype: torch.dtype) -> Any:
    from diffusers import WanTransformer3DModel

    from arc_longlive.causal import CausalWan

    config = {"patch_size": (1, 2, 2), "in_channels": 16, "out_channels": 16, "freq_dim": 256}
    config |= {"cross_attn_norm": True, "qk_norm": "rms_norm_across_heads", **preset["transformer"]}
    torch.manual_seed(0)
    transformer = WanTransformer3DModel(**config).to(device, dtype).eval().requires_grad_(False)
    return CausalWan(transformer)


def sigmas(shift: float = 5.0) -> list[float]:
    return [shift * s / (1 + (shift - 1) * s) for s in (1.0, 0.75, 0.5, 0.25)] + [0.0]


def run_blocks(
    causal: Any, blocks: int, preset: dict[str, Any], device: torch.device, dtype: torch.dtype, cached: bool
):
    """LongLive's loop over ``blocks`` blocks; returns the seconds each block took."""
    from arc_fabric_core.kit.kv_cache import WindowPolicy

    h, w = preset["latent"]
    text_dim = preset["transformer"]["text_dim"]
    g = torch.Generator().manual_seed(0)
    prompt = torch.randn(1, preset["tokens"], text_dim, generator=g).to(device, dtype)
    policy = WindowPolicy(3, 12, 3)
    cache = causal.new_cache(policy, h, w)
    clean = torch.zeros(1, 16, 0, h, w, device=device, dtype=torch.float32)
    levels = sigmas()
    times = []
    with torch.no_grad():
        for b in range(blocks):
            start = 3 * b
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            x = torch.randn(1, 16, 3, h, w, generator=g).to(device)
            for i in range(4):
                t = torch.tensor(levels[i] * 1000)
                if cached:
                    flow = causal(x, t, prompt, start, cache).float()
                else:
                    steps = torch.cat([torch.zeros(start), t.repeat(3)])
                    flow = causal.reference_forward(torch.cat([clean, x], 2), steps, prompt, policy)[:, :, start:]
                    flow = flow.float()
                x0 = x - levels[i] * flow
                x = x0 if i == 3 else (1 - levels[i + 1]) * x0 + levels[i + 1] * torch.randn_like(x0)
            if cached:
                causal(x, torch.tensor(0.0), prompt, start, cache, write=True)
            clean = torch.cat([clean, x], 2)
            if device.type == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - t0)
    return times


def summary(times: list[float]) -> dict[str, float]:
    frames = [9] + [12] * (len(times) - 1)
    steady = times[1:] or times
    return {
        "block_ms_first": round(times[0] * 1000, 1),
        "block_ms_median_after_first": round(statistics.median(steady) * 1000, 1),
        "block_ms_last": round(times[-1] * 1000, 1),
        "fps": round(sum(frames) / sum(times), 2),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", choices=sorted(PRESETS), default="tiny")
    ap.add_argument("--blocks", type=int, default=8)
    ap.add_argument("--uncached-blocks", type=int, default=None, help="blocks for the uncached arm (default: --blocks)")
    ap.add_argument("--runs", type=int, default=3, help="runs of each arm, interleaved")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()
    device = torch.device(args.device)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    preset = PRESETS[args.preset]
    causal = build(preset, device, dtype)
    run_blocks(causal, 1, preset, device, dtype, cached=True)  # warm-up (kernels, allocator)
    uncached_blocks = args.uncached_blocks or args.blocks
    # Runs alternate between the arms (drift on a shared machine cancels out); per block, the median.
    cached_runs, uncached_runs = [], []
    for run in range(args.runs):
        arms = [(cached_runs, args.blocks, True), (uncached_runs, uncached_blocks, False)]
        for into, blocks, is_cached in arms if run % 2 == 0 else arms[::-1]:
            into.append(run_blocks(causal, blocks, preset, device, dtype, cached=is_cached))
    cached = [statistics.median(r[i] for r in cached_runs) for i in range(args.blocks)]
    uncached = [statistics.median(r[i] for r in uncached_runs) for i in range(uncached_blocks)]
    n = min(len(cached), len(uncached))
    out = {
        "preset": args.preset,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "dtype": str(dtype).removeprefix("torch."),
        "blocks": args.blocks,
        "cached": summary(cached),
        "uncached": summary(uncached),
        # Same blocks, same work apart from the cache: how much the cache saves by then.
        "uncached_over_cached_at_block": {
            str(i): round(uncached[i] / cached[i], 2) for i in range(0, n, max(1, n // 4))
        },
        "uncached_over_cached_total": round(sum(uncached[:n]) / sum(cached[:n]), 2),
    }
    if device.type == "cuda":
        out["peak_gib"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
