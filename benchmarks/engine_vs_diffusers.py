"""Framework overhead: our engine against diffusers' WanPipeline on the same model.

A mid-size random-weight Wan configuration (one CFG step takes well over 50 ms on a
2-core CPU) is saved in the published diffusers layout and loaded through the
plugin's real-variant path. Both sides then run interleaved, several times, on the
very same modules; the engine runs with full state tracking and a checkpoint every
step. Prints the per-run times, the best-of ratio (engine / diffusers; the least
disturbed runs on a shared machine), the median of paired ratios, and the CPU-time ratio.

    python benchmarks/engine_vs_diffusers.py [--runs 15] [--steps 10] [--threads N]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch


def build_mid_checkpoint(folder: Path) -> None:
    from diffusers import AutoencoderKLWan, UniPCMultistepScheduler, WanPipeline, WanTransformer3DModel
    from transformers import UMT5Config, UMT5EncoderModel

    from arc_fabric_core.kit.tiny_text import t5_tokenizer
    from arc_fabric_core.kit.tiny_wan import SCHEDULER_CONFIG, TEXT_ENCODER_CONFIG, TRANSFORMER_CONFIG, VAE_CONFIG

    torch.manual_seed(0)
    tokenizer = t5_tokenizer()
    text_cfg = {**TEXT_ENCODER_CONFIG, "d_model": 64}
    text_encoder = UMT5EncoderModel(UMT5Config(vocab_size=len(tokenizer), **text_cfg)).eval()
    # The tiny Wan, widened and deepened until one CFG step takes ~100 ms on a 2-core CPU.
    mid = dict(
        num_attention_heads=4, attention_head_dim=32, text_dim=64, ffn_dim=512, num_layers=6, rope_max_seq_len=64
    )
    transformer = WanTransformer3DModel(**{**TRANSFORMER_CONFIG, **mid}).eval()
    vae = AutoencoderKLWan(**VAE_CONFIG).eval()
    WanPipeline(
        tokenizer=tokenizer,
        text_encoder=text_encoder,
        vae=vae,
        transformer=transformer,
        scheduler=UniPCMultistepScheduler(**SCHEDULER_CONFIG),
    ).save_pretrained(folder)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--frames", type=int, default=17)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from arc_fabric_core.engine.facade import Engine
    from arc_fabric_core.store.files import SessionStore
    from arc_wan21.reference import reference_call_kwargs, reference_pipeline

    params = dict(
        prompt="a lighthouse in a storm",
        negative_prompt="blurry",
        num_frames=args.frames,
        height=args.size,
        width=args.size,
        steps=args.steps,
        guidance=5.0,
        seed=0,
    )
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "Wan2.1-T2V-mid-Diffusers"
        build_mid_checkpoint(folder)
        engine = Engine(SessionStore(Path(tmp) / "store"), device="cpu", checkpoint_every=1, checkpoint_keep=2)
        # The same engine checkpointing only at the last step: splits loop overhead from checkpoint cost.
        sparse = Engine(engine.store, device="cpu", cache=engine.cache, checkpoint_every=args.steps)
        wan = engine.resolve("wan21", "1.3b", str(folder))  # the real-weights loading path

        def ours(eng: Engine = engine) -> torch.Tensor:
            session = eng.create(wan, params)
            eng.run(session)
            return session.latents

        def theirs() -> torch.Tensor:
            ref = reference_pipeline(engine.cache.get(wan, engine.device, "auto"))
            return ref(**reference_call_kwargs(params), output_type="latent").frames

        assert torch.equal(ours(), theirs()), "engine and pipeline disagree"  # also a warm-up
        t_ours, t_theirs, c_ours, c_theirs, t_sparse = [], [], [], [], []
        arms = ((ours, t_ours, c_ours), (theirs, t_theirs, c_theirs), (lambda: ours(sparse), t_sparse, []))
        for run in range(args.runs):
            # Alternate the order (ABC, CBA, ...) so that drift on a shared machine cancels out.
            for fn, wall, cpu in arms if run % 2 == 0 else arms[::-1]:
                start, start_cpu = time.perf_counter(), time.process_time()
                fn()
                wall.append(time.perf_counter() - start)
                cpu.append(time.process_time() - start_cpu)
        ratios = [a / b for a, b in zip(t_ours, t_theirs, strict=True)]
        step_ms = statistics.median(t_theirs) / args.steps * 1000
        print(
            f"config: {args.frames} frames {args.size}x{args.size}, {args.steps} steps, CFG, "
            f"checkpoint every step; diffusers step {step_ms:.0f} ms"
        )
        print("engine   s:", " ".join(f"{t:.3f}" for t in t_ours))
        print("diffusers s:", " ".join(f"{t:.3f}" for t in t_theirs))
        print("engine, final checkpoint only s:", " ".join(f"{t:.3f}" for t in t_sparse))
        cpu_ratio = statistics.median(c_ours) / statistics.median(c_theirs)
        sparse_ratio = statistics.median(a / b for a, b in zip(t_sparse, t_theirs, strict=True))
        print(
            f"without per-step checkpoints: median ratio {sparse_ratio:.3f}, "
            f"best-of {min(t_sparse) / min(t_theirs):.3f}"
        )
        # On a shared machine the minimum is the least disturbed run (timeit's reasoning).
        print(
            f"best-of ratio engine/diffusers: {min(t_ours) / min(t_theirs):.3f} "
            f"({min(t_ours):.3f}s / {min(t_theirs):.3f}s)"
        )
        print(
            f"median ratio engine/diffusers: {statistics.median(ratios):.3f} wall (median times "
            f"{statistics.median(t_ours):.3f}s / {statistics.median(t_theirs):.3f}s), {cpu_ratio:.3f} CPU time "
            "(all threads, checkpoint writer included)"
        )


if __name__ == "__main__":
    main()
