"""DreamDojo rollouts through the engine: seconds per chunk and per rollout, guidance 0
(one pass per step) against 1 (the unconditional pass too), peak memory.

    python benchmarks/dreamdojo.py                   # CPU: a mid-size net, 2 chunks at 128x160, 4 steps
    python benchmarks/dreamdojo.py --preset 2b       # GPU: 2B (2048 ch, 16 heads, 28 blocks), bf16,
                                                     # 49 frames at 480x640, 35 steps (the authors' eval)

The weights are random, saved once in the published layout (``model_ema_bf16.pt`` in the
authors' key names, a diffusers ``vae/``, a random empty-prompt embedding, statistics)
and loaded through the real variant ``2b-gr1``, so the loading path is the one real
weights take. The two arms run interleaved on the one warm model. Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from arc_fabric_core.engine.facade import Engine
from arc_fabric_core.store.files import SessionStore

PRESETS: dict[str, dict[str, Any]] = {
    # heads, head dim, blocks, text tokens x channels, the Wan VAE at full width (base 96)
    "cpu": {
        "heads": 4,
        "head_dim": 64,
        "layers": 6,
        "text": (64, 1024),
        "vae": {},
        "frames": 25,
        "size": (128, 160),
        "steps": 4,
    },
    "2b": {
        "heads": 16,
        "head_dim": 128,
        "layers": 28,
        "text": (512, 100352),
        "vae": {},
        "frames": 49,
        "size": (480, 640),
        "steps": 35,
    },
}


def build_folder(root: Path, preset: dict[str, Any]) -> Path:
    from arc_dreamdojo.author_layout import save_author_checkpoint
    from arc_dreamdojo.network import DreamDojoNet
    from arc_dreamdojo.tiny import full_config
    from arc_dreamdojo.weights import STATS_FILE, TEXT_FILE
    from diffusers import AutoencoderKLWan, CosmosTransformer3DModel

    torch.manual_seed(0)
    config = full_config(preset["heads"], preset["head_dim"], preset["layers"])
    config["crossattn_proj_in_channels"] = preset["text"][1]
    net = DreamDojoNet(CosmosTransformer3DModel(**config)).to(torch.bfloat16)
    save_author_checkpoint(net, root / "model_ema_bf16.pt")
    del net
    AutoencoderKLWan(**preset["vae"]).save_pretrained(root / "vae")
    torch.save(torch.randn(1, *preset["text"]).to(torch.bfloat16), root / TEXT_FILE)
    (root / STATS_FILE).write_text(json.dumps({"action": {"min": [0.0] * 44, "max": [1.0] * 44}}))
    return root


def inputs(chunks: int, height: int, width: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    actions = torch.zeros(12 * chunks, 384)
    actions[:, :29] = torch.rand(12 * chunks, 29, generator=g) * 2 - 1
    return {"image": torch.rand(3, height, width, generator=g), "actions": actions}


def peak_bytes(device: torch.device) -> int | None:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device)
    try:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    except ImportError:
        return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", choices=sorted(PRESETS), default="cpu")
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--frames", type=int, default=None, help="1 + 12k")
    ap.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    args = ap.parse_args()
    preset = PRESETS[args.preset]
    frames, steps = args.frames or preset["frames"], args.steps or preset["steps"]
    height, width = preset["size"]
    chunks = (frames - 1) // 12
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        folder = build_folder(Path(tmp) / "weights", preset)
        built = time.perf_counter() - t0
        engine = Engine(SessionStore(Path(tmp) / "sessions"), device=args.device)
        params = {"num_frames": frames, "height": height, "width": width, "steps": steps}
        per_chunk: dict[str, list[float]] = {"guidance 0": [], "guidance 1": []}
        per_rollout: dict[str, list[float]] = {"guidance 0": [], "guidance 1": []}
        load = None
        for _ in range(args.runs):
            for arm, guidance in (("guidance 0", 0.0), ("guidance 1", 1.0)):
                session = engine.create(
                    "dreamdojo",
                    {**params, "guidance": guidance},
                    variant="2b-gr1",
                    weights=str(folder),
                    inputs=inputs(chunks, height, width),
                )
                if load is None:
                    t0 = time.perf_counter()
                    engine.load(session.ref, params=session.params)
                    load = time.perf_counter() - t0
                marks: list[float] = []
                t0 = time.perf_counter()
                for chunk in range(chunks):
                    engine.run(session, until=(chunk + 1) * steps)
                    marks.append(time.perf_counter())
                engine.decode(session)
                if engine.device.type == "cuda":
                    torch.cuda.synchronize()
                per_rollout[arm].append(time.perf_counter() - t0)
                starts = [t0, *marks[:-1]]
                per_chunk[arm].extend(b - a for a, b in zip(starts, marks, strict=True))
        peak = peak_bytes(engine.device)
    result = {
        "preset": args.preset,
        "device": str(engine.device),
        "frames": frames,
        "size": f"{width}x{height}",
        "steps_per_chunk": steps,
        "chunks": chunks,
        "weights_built_s": round(built, 1),
        "load_s": round(load or 0.0, 2),
        "s_per_chunk": {k: round(statistics.median(v), 3) for k, v in per_chunk.items()},
        "s_per_rollout_with_decode": {k: round(statistics.median(v), 3) for k, v in per_rollout.items()},
        "guidance_1_over_0": round(
            statistics.median(per_rollout["guidance 1"]) / statistics.median(per_rollout["guidance 0"]), 3
        ),
        "peak_gib": round(peak / 2**30, 2) if peak else None,
        "peak_is": "torch.cuda.max_memory_allocated" if engine.device.type == "cuda" else "process max RSS",
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.out is not None:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
