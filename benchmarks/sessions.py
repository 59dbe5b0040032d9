"""What sessions cost and save: checkpoint overhead, edit and fork against a full run.

Four arms, interleaved round by round on the same warm Wan model so that drift on a
shared machine cancels out:

  full     a whole run, a checkpoint every step (the default policy)
  nockpt   the same run without any checkpoint (checkpoint_every=0)
  edit     an edit of a finished session from step N/2 (re-noise, then N/2 steps; new prompt)
  fork     a fork of a finished session at step N/2 with a new guidance (N/2 steps)

Prints the median time of each arm and the ratios full/nockpt (target <= 1.03),
edit/full (target <= 0.55) and fork/full.

    python benchmarks/sessions.py                        # mid-size Wan on the CPU
    python benchmarks/sessions.py --preset wan-1.3b      # the 1.3B architecture, bf16, on CUDA

Weights are random (the cost of a step does not depend on their values). The
wan-1.3b preset builds the published 1.3B transformer configuration at 480x832,
81 frames — the real step time — with a small text encoder (encoding runs once).
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
from wan_random import CPU_MID, WAN_1_3B, build_components

PRESETS: dict[str, dict[str, Any]] = {
    # The tiny Wan, widened until one CFG step takes ~100 ms on a 2-core CPU.
    "cpu-mid": dict(
        transformer=CPU_MID,
        text_dim=64,
        params=dict(num_frames=17, height=128, width=128),
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
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--store", type=Path, default=None, help="store folder (default: a temporary one)")
    args = ap.parse_args()
    preset = PRESETS[args.preset]

    from arc_fabric_core.engine.facade import Engine
    from arc_fabric_core.store.files import SessionStore

    with tempfile.TemporaryDirectory(dir=args.store) as tmp:
        from arc_wan21.plugin import plugins_with_wan

        plugins = plugins_with_wan()
        store = SessionStore(Path(tmp) / "store")
        engine = Engine(store, plugins=plugins, device=preset["device"])
        bare = Engine(store, plugins=plugins, device=preset["device"], cache=engine.cache, checkpoint_every=0)
        ref = engine.resolve("wan21", "tiny")  # the variant's name; the components are the preset's
        start = time.perf_counter()
        engine.cache.adopt(ref, engine.device, engine.dtype, build_components(preset))
        print(f"built {args.preset} in {time.perf_counter() - start:.1f}s")
        params = dict(prompt="a lighthouse in a storm", negative_prompt="blurry", steps=args.steps, guidance=5.0)
        params.update(preset["params"])
        half = args.steps // 2

        def full(eng: Engine = engine) -> str:
            session = eng.create(ref, params)
            eng.run(session)
            return session.id

        source = full()  # also the warm-up
        arms = {
            "full": full,
            "nockpt": lambda: full(bare),
            "edit": lambda: engine.run(engine.edit(source, step=half, overrides={"prompt": "a calm sea"})).id,
            "fork": lambda: engine.run(engine.fork(source, step=half, overrides={"guidance": 4.0})).id,
        }
        times = interleaved(arms, args.runs, engine.device)

        med = {name: statistics.median(t) for name, t in times.items()}
        p = preset["params"]
        device = torch.cuda.get_device_name() if engine.device.type == "cuda" else "cpu"
        print(
            f"{args.preset} on {device}: {p['num_frames']} frames {p['width']}x{p['height']}, {args.steps} steps "
            f"UniPC + CFG, {args.runs} rounds; edit/fork from step {half}"
        )
        for name, values in times.items():
            print(f"  {name:<7} median {med[name]:.3f}s  ({' '.join(f'{v:.3f}' for v in values)})")
        paired = statistics.median(a / b for a, b in zip(times["full"], times["nockpt"], strict=True))
        print(
            f"checkpoint overhead full/nockpt: {med['full'] / med['nockpt']:.3f} (median of paired ratios {paired:.3f})"
        )
        print(f"edit from N/2 / full run:        {med['edit'] / med['full']:.3f}")
        print(f"fork from N/2 / full run:        {med['fork'] / med['full']:.3f}")
        ckpt = store.load_doc(source).checkpoints[-1]
        print(f"one checkpoint: {ckpt.bytes / 2**20:.1f} MiB (latents + UniPC history + RNG)")


if __name__ == "__main__":
    main()
