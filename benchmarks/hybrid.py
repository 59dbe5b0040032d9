"""What hybrid schedules cost: each shipped Wan hybrid against the two single-model runs
and against the time its per-step costs predict.

A "small" and a "large" random-weight Wan (per-step cost about 6x apart, as 1.3B and
14B at 480p) are built once and held warm as the stand-ins the shipped schedules run on
(tiny and tiny-14b). Arms run interleaved, round by round, without checkpoints, so that
only denoising is timed:

  small, large                     every step on one model
  hybrid_wan_1.3b_14b etc.         the configs in configs/schedule/, as shipped

For each hybrid: its time, its ratio to the large run (the saving), and the ratio of
measured to predicted, where predicted = the sum over its steps of the single-model
per-step times (hand-off overhead shows as a ratio above 1).

    python benchmarks/hybrid.py                          # mid-size models on the CPU
    python benchmarks/hybrid.py --preset wan-1.3b-14b    # the published 1.3B and 14B architectures, bf16, CUDA
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from timing import interleaved
from wan_random import CPU_LARGE, CPU_MID, WAN_1_3B, WAN_14B, build_components

SCHEDULES = ["hybrid_wan_1.3b_14b", "hybrid_wan_14b_1.3b", "hybrid_wan_sandwich"]

PRESETS: dict[str, dict[str, Any]] = {
    "cpu-mid": dict(
        small=CPU_MID,
        large=CPU_LARGE,
        text_dim=64,
        params=dict(num_frames=17, height=128, width=128),
        device="cpu",
        dtype=torch.float32,
    ),
    # The two published architectures at 480p; 17 frames keeps a 14B round in seconds.
    "wan-1.3b-14b": dict(
        small=WAN_1_3B,
        large=WAN_14B,
        text_dim=4096,
        params=dict(num_frames=17, height=480, width=832),
        device="cuda",
        dtype=torch.bfloat16,
    ),
}


def load_schedule(name: str) -> Any:
    from arc_fabric_core.engine.hybrid import named_schedule, parse_hybrid

    return parse_hybrid({**named_schedule(name), "tiny": "true"})  # the stand-ins, which hold the benchmark's models


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", choices=sorted(PRESETS), default="cpu-mid")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--steps", type=int, default=10)
    args = ap.parse_args()
    preset = PRESETS[args.preset]

    from arc_fabric_core.engine.facade import Engine
    from arc_fabric_core.store.files import SessionStore
    from arc_wan21.plugin import plugins_with_wan

    with tempfile.TemporaryDirectory() as tmp:
        store = SessionStore(Path(tmp))
        engine = Engine(store, plugins=plugins_with_wan(), device=preset["device"], checkpoint_every=0)
        refs = {"small": engine.resolve("wan21", "tiny"), "large": engine.resolve("wan21", "tiny-14b")}
        for size, ref in refs.items():
            start = time.perf_counter()
            engine.cache.adopt(ref, engine.device, engine.dtype, build_components(preset, preset[size]))
            print(f"built {size} in {time.perf_counter() - start:.1f}s")
        params = dict(prompt="a lighthouse in a storm", negative_prompt="blurry", steps=args.steps, guidance=5.0)
        params.update(preset["params"])

        step_times: dict[str, list[list[float]]] = {}

        def arm(name: str, spec: Any, ref: Any) -> Any:
            def go() -> Any:
                times: list[float] = []
                session = engine.create(ref, params, hybrid=spec)
                engine.run(session, listeners=[lambda ev: times.append(ev.step_seconds)])
                step_times.setdefault(name, []).append(times)
                return session

            return go

        arms = {"small": arm("small", None, refs["small"]), "large": arm("large", None, refs["large"])}
        plans: dict[str, Any] = {}
        for name in SCHEDULES:
            arms[name] = arm(name, load_schedule(name), refs["small"])
        for go in arms.values():  # warm-up, and each hybrid's plan
            session = go()
            if session.doc.stages:
                plans[session.doc.schedule_name] = session.stages
        step_times.clear()

        totals = interleaved(arms, args.runs, engine.device)

        med = {name: statistics.median(v) for name, v in totals.items()}
        # Per-step time of each model at each step index (the first step warms caches).
        per_step = {
            size: [statistics.median(run[i] for run in step_times[size]) for i in range(args.steps)]
            for size in ("small", "large")
        }
        p = preset["params"]
        device = torch.cuda.get_device_name() if engine.device.type == "cuda" else "cpu"
        mean_small, mean_large = (statistics.mean(per_step[s]) for s in ("small", "large"))
        print(
            f"{args.preset} on {device}: {p['num_frames']} frames {p['width']}x{p['height']}, {args.steps} steps "
            f"UniPC + CFG, {args.runs} rounds, no checkpoints"
        )
        print(f"per step: small {mean_small:.3f}s, large {mean_large:.3f}s (large/small {mean_large / mean_small:.2f})")
        print(f"  {'arm':<22}{'median':>9}  {'/large':>7}  {'/predicted':>10}  steps")
        for name in arms:
            if name in ("small", "large"):
                predicted = sum(per_step[name])
                who = f"all {name}"
            else:
                stages = plans[name]
                sizes = ["small" if st.ref.variant.name == "tiny" else "large" for st in stages]
                runner = []
                begin = 0
                for size, st in zip(sizes, stages, strict=True):
                    runner += [size] * ((st.end or 0) - begin)
                    begin = st.end or begin
                predicted = sum(per_step[size][i] for i, size in enumerate(runner))
                who = " ".join(f"{size}x{runner.count(size)}" for size in ("small", "large"))
            print(
                f"  {name:<22}{med[name]:>8.3f}s  {med[name] / med['large']:>7.3f}  "
                f"{med[name] / predicted:>10.3f}  {who}"
            )


if __name__ == "__main__":
    main()
