"""The tiny LongLive checkpoint: Wan's classes at tiny sizes, random weights, built offline,
saved in the diffusers layout of Wan2.1-T2V-1.3B-Diffusers (the folder a real LongLive
variant starts from)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from arc_fabric_core.kit.loading import build_once, cache_root
from arc_longlive.spec import TINY_ROPE_POSITIONS

TINY_FORMAT = "v1"  # bump when the tiny configuration changes

# diffusers' own tiny Wan configuration; the rotary table covers 32 latent frames (10 blocks).
TRANSFORMER_CONFIG: dict[str, Any] = dict(
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
VAE_CONFIG: dict[str, Any] = dict(
    base_dim=3, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1, temperal_downsample=[False, True, True]
)
TEXT_ENCODER_CONFIG: dict[str, Any] = dict(
    d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4, relative_attention_num_buckets=8, dropout_rate=0.0
)
# The scheduler of the Wan2.1 Diffusers folders (unused by LongLive's loop, kept so the
# folder loads as a WanPipeline like the real one).
SCHEDULER_CONFIG: dict[str, Any] = dict(
    num_train_timesteps=1000, prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=3.0
)


def build_tiny_pipeline(seed: int = 0) -> Any:
    from diffusers import AutoencoderKLWan, UniPCMultistepScheduler, WanPipeline, WanTransformer3DModel
    from transformers import UMT5Config, UMT5EncoderModel

    from arc_fabric_core.kit.tiny_text import t5_tokenizer

    tokenizer = t5_tokenizer()
    torch.manual_seed(seed)
    text_encoder = UMT5EncoderModel(UMT5Config(vocab_size=len(tokenizer), **TEXT_ENCODER_CONFIG)).eval()
    torch.manual_seed(seed + 1)
    vae = AutoencoderKLWan(**VAE_CONFIG).eval()
    torch.manual_seed(seed + 2)
    transformer = WanTransformer3DModel(**TRANSFORMER_CONFIG).eval()
    return WanPipeline(
        tokenizer=tokenizer,
        text_encoder=text_encoder,
        vae=vae,
        transformer=transformer,
        scheduler=UniPCMultistepScheduler(**SCHEDULER_CONFIG),
    )


def ensure_tiny_checkpoint(root: Path | None = None) -> Path:
    """The tiny checkpoint folder, built once (atomically) if missing."""
    folder = (root or cache_root()) / "tiny" / f"longlive-{TINY_FORMAT}"
    return build_once(folder, lambda tmp: build_tiny_pipeline().save_pretrained(tmp))
