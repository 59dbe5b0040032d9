"""The tiny LTX checkpoints: real classes, tiny sizes, random weights, built offline.

They are saved in the diffusers layout of the published checkpoints (an
LTXConditionPipeline folder; the latent upsampler in a model folder of its own) and
then loaded through the same code as the real weights, so the tiny variants exercise
every path.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from arc_fabric_core.kit.loading import build_once, cache_root
from arc_fabric_core.kit.tiny_text import t5_tokenizer

TINY_FORMAT = "v2"  # bump when a tiny configuration changes (v2: the kit's tokenizer)

# The configurations diffusers' own LTX tests use (a few hundredths of a second per call on a CPU).
TRANSFORMER_CONFIG: dict[str, Any] = dict(
    in_channels=8,
    out_channels=8,
    patch_size=1,
    patch_size_t=1,
    num_attention_heads=4,
    attention_head_dim=8,
    cross_attention_dim=32,
    num_layers=1,
    caption_channels=32,
)
# The stand-in for 13B: more layers over the same tiny text encoder and VAE, so that the
# two hand latents to each other in a hybrid schedule, as 2B and 13B 0.9.8 do.
LARGE_TRANSFORMER_CONFIG: dict[str, Any] = {**TRANSFORMER_CONFIG, "num_layers": 4}
VAE_CONFIG: dict[str, Any] = dict(
    in_channels=3,
    out_channels=3,
    latent_channels=8,
    block_out_channels=(8, 8, 8, 8),
    decoder_block_out_channels=(8, 8, 8, 8),
    layers_per_block=(1, 1, 1, 1, 1),
    decoder_layers_per_block=(1, 1, 1, 1, 1),
    spatio_temporal_scaling=(True, True, False, False),
    decoder_spatio_temporal_scaling=(True, True, False, False),
    decoder_inject_noise=(False, False, False, False, False),
    upsample_residual=(False, False, False, False),
    upsample_factor=(1, 1, 1, 1),
    timestep_conditioning=False,
    patch_size=1,
    patch_size_t=1,
    encoder_causal=True,
    decoder_causal=False,
)
UPSAMPLER_CONFIG: dict[str, Any] = dict(
    in_channels=8, mid_channels=32, num_blocks_per_stage=1, dims=3, spatial_upsample=True, temporal_upsample=False
)
TEXT_ENCODER_CONFIG: dict[str, Any] = dict(
    d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4, relative_attention_num_buckets=8, dropout_rate=0.0
)
# The scheduler diffusers saves with the LTXConditionPipeline checkpoints: unshifted, so a
# custom timestep t is the noise level t / 1000.
SCHEDULER_CONFIG: dict[str, Any] = dict(num_train_timesteps=1000, shift=1.0, use_dynamic_shifting=False)
MAX_SEQUENCE_LENGTH = 128


def build_vae(seed: int) -> Any:
    from diffusers import AutoencoderKLLTXVideo

    torch.manual_seed(seed)
    vae = AutoencoderKLLTXVideo(**VAE_CONFIG).eval()
    # Real checkpoints normalise latents per channel; give the tiny one statistics of its
    # own (not 0 and 1) so that a missed or doubled (de)normalisation shows in the tests.
    with torch.no_grad():
        vae.latents_mean.copy_(torch.randn(vae.latents_mean.shape) * 0.1)
        vae.latents_std.copy_(torch.rand(vae.latents_std.shape) + 0.5)
    return vae


def build_tiny_pipeline(seed: int = 0, large: bool = False) -> Any:
    """The tiny LTXConditionPipeline with random weights drawn from ``seed``; ``large``
    swaps in the bigger transformer (its weights drawn from their own seed)."""
    from diffusers import FlowMatchEulerDiscreteScheduler, LTXConditionPipeline, LTXVideoTransformer3DModel
    from transformers import T5Config, T5EncoderModel

    tokenizer = t5_tokenizer(model_max_length=MAX_SEQUENCE_LENGTH)
    torch.manual_seed(seed)
    text_encoder = T5EncoderModel(T5Config(vocab_size=len(tokenizer), **TEXT_ENCODER_CONFIG)).eval()
    vae = build_vae(seed + 1)
    torch.manual_seed(seed + 3 if large else seed + 2)
    transformer = LTXVideoTransformer3DModel(**(LARGE_TRANSFORMER_CONFIG if large else TRANSFORMER_CONFIG)).eval()
    return LTXConditionPipeline(
        tokenizer=tokenizer,
        text_encoder=text_encoder,
        vae=vae,
        transformer=transformer,
        scheduler=FlowMatchEulerDiscreteScheduler(**SCHEDULER_CONFIG),
    )


def build_tiny_upsampler(seed: int = 0) -> Any:
    from diffusers.pipelines.ltx.modeling_latent_upsampler import LTXLatentUpsamplerModel

    torch.manual_seed(seed + 4)
    return LTXLatentUpsamplerModel(**UPSAMPLER_CONFIG).eval()


def ensure_tiny_checkpoint(root: Path | None = None, large: bool = False) -> Path:
    """The tiny LTXConditionPipeline folder (``large``: the 13B stand-in), built once if missing."""
    folder = (root or cache_root()) / "tiny" / f"ltx{'-large' if large else ''}-{TINY_FORMAT}"
    return build_once(folder, lambda tmp: build_tiny_pipeline(large=large).save_pretrained(tmp))


def ensure_tiny_upsampler(root: Path | None = None) -> Path:
    """The tiny latent upsampler's model folder (shared by both tiny variants), built once if missing."""
    folder = (root or cache_root()) / "tiny" / f"ltx-upsampler-{TINY_FORMAT}"
    return build_once(folder, lambda tmp: build_tiny_upsampler().save_pretrained(tmp), marker="config.json")
