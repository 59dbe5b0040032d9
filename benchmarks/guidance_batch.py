"""Batched guidance against two passes: one Wan CFG step, both arms interleaved.

  batched   batch_guidance=on: the conditional and unconditional passes as one
            transformer call of batch 2
  two-pass  batch_guidance=off: two calls of batch 1, one after the other

Both arms run Wan's own ``arc_denoise_step`` on the same warm model, latents and prompt
embeddings. Prints the median time per step of each arm, the ratio batched/two-pass
(below 1: batching pays) and the largest difference between the two arms' outputs.

    python benchmarks/guidance_batch.py                      # mid-size Wan on the CPU
    python benchmarks/guidance_batch.py --preset wan-1.3b    # the 1.3B architecture, bf16, on CUDA

Weights are random (the cost of a step does not depend on their values). The wan-1.3b
preset builds the published 1.3B transformer configuration at 480x832, 81 frames.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import torch
from timing import interleaved
from wan_random import CPU_LARGE, CPU_MID, WAN_1_3B, build_components

PRESETS: dict[str, dict[str, Any]] = {
    # The tiny Wan, widened until one CFG step takes ~100 ms on a 2-core CPU.
    "cpu-mid": dict(
        transformer=CPU_MID,
        text_dim=64,
        params=dict(num_frames=17, height=128, width=128),
        device="cpu",
        dtype=torch.float32,
    ),
    # About 6x cpu-mid's step (the large model of the CPU hybrid benchmark), at 4x the tokens.
    "cpu-large": dict(
        transformer=CPU_LARGE,
        text_dim=64,
        params=dict(num_frames=17, height=256, width=256),
        device="cpu",
        dtype=torch.float32,
    ),
    # Wan2.1-T2V-1.3B's transformer configuration, at its native 480p.
    "wan-1.3b": dict(
        transformer=WAN_1_3B,
        text_dim=4096,
        params=dict(num_frames=81, height=480, width=832),
        device="cuda",
        dtype=torch.bfloat16,
    ),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", choices=sorted(PRESETS), default="cpu-mid")
    ap.add_argument("--runs", type=int, default=9, help="steps timed per arm")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    args = ap.parse_args()
    preset = PRESETS[args.preset]
    if args.threads:
        torch.set_num_threads(args.threads)

    from arc_fabric_core.contract.schedule import StepContext
    from arc_wan21 import plugin
    from arc_wan21.spec import WanParams

    start = time.perf_counter()
    components = build_components(preset)
    print(f"built {args.preset} in {time.perf_counter() - start:.1f}s")
    base = WanParams(prompt="a lighthouse in a storm", negative_prompt="blurry", guidance=5.0, **preset["params"])
    arms_params = {
        name: base.model_copy(update={"batch_guidance": s}) for name, s in [("batched", "on"), ("two-pass", "off")]
    }

    with torch.inference_mode():
        conditioning = plugin.arc_encode(components=components, params=base)
        schedule = plugin.arc_schedule(components=components, params=base)
        generator = torch.Generator(components.device).manual_seed(0)
        latents = plugin.arc_prepare_latents(components=components, params=base, generator=generator)
        sigma = float(schedule.sigmas[0]) if schedule.sigmas is not None else None
        step = StepContext(index=0, total=base.steps, timestep=schedule.timesteps[0], sigma=sigma)
        outputs: dict[str, torch.Tensor] = {}

        def arm(name: str) -> Any:
            def run() -> None:
                outputs[name] = plugin.arc_denoise_step(
                    components=components,
                    latents=latents,
                    step=step,
                    conditioning=conditioning,
                    params=arms_params[name],
                )

            return run

        arms = {name: arm(name) for name in arms_params}
        for run in arms.values():  # warm-up
            run()
        times = interleaved(arms, args.runs, components.device)

    med = {name: statistics.median(t) for name, t in times.items()}
    p = preset["params"]
    device = torch.cuda.get_device_name() if components.device.type == "cuda" else "cpu"
    threads = torch.get_num_threads()
    print(
        f"{args.preset} on {device} ({threads} threads): {p['num_frames']} frames {p['width']}x{p['height']}, "
        f"{preset['dtype']}, one CFG step, {args.runs} rounds"
    )
    for name, values in times.items():
        print(f"  {name:<8} median {med[name] * 1000:.1f} ms  ({' '.join(f'{v * 1000:.1f}' for v in values)})")
    paired = statistics.median(a / b for a, b in zip(times["batched"], times["two-pass"], strict=True))
    print(f"batched / two-pass: {med['batched'] / med['two-pass']:.3f} (median of paired ratios {paired:.3f})")
    diff = (outputs["batched"].float() - outputs["two-pass"].float()).abs().max().item()
    print(f"max |batched - two-pass| of the step's output: {diff:.3g}")


if __name__ == "__main__":
    main()
