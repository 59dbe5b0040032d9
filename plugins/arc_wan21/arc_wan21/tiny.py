"""The tiny Wan checkpoint: real classes, tiny sizes, random weights, built offline.

It is saved in the diffusers layout of the published checkpoints and then loaded
through the same code as the real weights, so the tiny variant exercises every path.
"""

from __future__ import annotations

from pathlib import Path

import torch

from arc_fabric_core.kit.loading import build_once, cache_root
from arc_wan21.spec import TINY_ROPE_POSITIONS

TINY_FORMAT = "v1"  # bump when the tiny configuration changes

# The configurations diffusers' own Wan tests use (about 0.05 s per call on a CPU).
TRANSFORMER_CONFIG = dict(
    patch_size=(1, 2, 2),
    num_attention_heads=2,
    attention_head_dim=12,
    in_channels=16,
    out_channels=16,
    text_dim=32,
    freq_dim=256,
    ffn_dim=32,
    num_layers=2,
    cross_attn_norm=True,
    qk_norm="rms_norm_across_heads",
    rope_max_seq_len=TINY_ROPE_POSITIONS,
)
# The stand-in for 14B: a bigger transformer (about 3x the per-step cost) over the same
# tiny text encoder and VAE, so that the two hand latents to each other in a hybrid
# schedule, as 1.3B and 14B do.
LARGE_TRANSFORMER_CONFIG = {**TRANSFORMER_CONFIG, "num_attention_heads": 4, "num_layers": 4, "ffn_dim": 64}
VAE_CONFIG = dict(
    base_dim=3, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1, temperal_downsample=[False, True, True]
)
TEXT_ENCODER_CONFIG = dict(
    d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4, relative_attention_num_buckets=8, dropout_rate=0.0
)
# The scheduler of the published Wan2.1-T2V Diffusers folders.
SCHEDULER_CONFIG = dict(
    num_train_timesteps=1000,
    prediction_type="flow_prediction",
    use_flow_sigmas=True,
    flow_shift=3.0,
    solver_order=2,
    solver_type="bh2",
    predict_x0=True,
    lower_order_final=True,
    final_sigmas_type="zero",
    timestep_spacing="linspace",
)


def build_tokenizer():
    """A small Unigram tokenizer (letters, digits, punctuation) in T5's fast-tokenizer shape."""
    from arc_fabric_core.kit.tiny_text import t5_tokenizer

    return t5_tokenizer()


def build_tiny_pipeline(seed: int = 0, large: bool = False):
    """Build the tiny components with random weights drawn from ``seed``; ``large``
    swaps in the bigger transformer (its weights drawn from their own seed)."""
    from diffusers import AutoencoderKLWan, UniPCMultistepScheduler, WanPipeline, WanTransformer3DModel
    from transformers import UMT5Config, UMT5EncoderModel

    tokenizer = build_tokenizer()
    torch.manual_seed(seed)
    text_encoder = UMT5EncoderModel(UMT5Config(vocab_size=len(tokenizer), **TEXT_ENCODER_CONFIG)).eval()
    torch.manual_seed(seed + 1)
    vae = AutoencoderKLWan(**VAE_CONFIG).eval()
    torch.manual_seed(seed + 3 if large else seed + 2)
    transformer = WanTransformer3DModel(**(LARGE_TRANSFORMER_CONFIG if large else TRANSFORMER_CONFIG)).eval()
    return WanPipeline(
        tokenizer=tokenizer,
        text_encoder=text_encoder,
        vae=vae,
        transformer=transformer,
        scheduler=UniPCMultistepScheduler(**SCHEDULER_CONFIG),
    )


def ensure_tiny_checkpoint(root: Path | None = None, large: bool = False) -> Path:
    """Return the tiny checkpoint folder (``large``: the 14B stand-in), building it once
    (atomically) if missing."""
    folder = (root or cache_root()) / "tiny" / f"wan21{'-large' if large else ''}-{TINY_FORMAT}"
    return build_once(folder, lambda tmp: build_tiny_pipeline(large=large).save_pretrained(tmp))
