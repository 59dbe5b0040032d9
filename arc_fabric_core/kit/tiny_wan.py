"""The tiny Wan 2.1: diffusers' Wan classes at tiny sizes with random weights, offline.

Wan 2.1 and every model built on it (LongLive's causal Wan) test with it: a
``WanPipeline`` (UMT5 text encoder, Wan VAE, Wan transformer, UniPC scheduler) in the
configurations diffusers' own Wan tests use, about 0.05 s per transformer call on a
CPU. A plugin saves it in the diffusers layout of the published checkpoints and loads
it through the same code as the real weights.
"""

from __future__ import annotations

from typing import Any

# The tiny transformer's rotary table (rope_max_seq_len): positions per axis, i.e.
# latent frames, and latent rows and columns of 16 pixels.
ROPE_POSITIONS = 32

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
    rope_max_seq_len=ROPE_POSITIONS,
)
VAE_CONFIG: dict[str, Any] = dict(
    base_dim=3, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1, temperal_downsample=[False, True, True]
)
TEXT_ENCODER_CONFIG: dict[str, Any] = dict(
    d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4, relative_attention_num_buckets=8, dropout_rate=0.0
)
# The scheduler of the published Wan2.1-T2V Diffusers folders.
SCHEDULER_CONFIG: dict[str, Any] = dict(
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


def tiny_wan_pipeline(
    seed: int = 0, transformer_config: dict[str, Any] | None = None, transformer_seed: int | None = None
) -> Any:
    """The tiny ``WanPipeline``, its weights drawn from ``seed`` (text encoder), ``seed + 1``
    (VAE) and ``transformer_seed`` (default ``seed + 2``): a plugin's bigger stand-in
    transformer (``transformer_config``) draws from a seed of its own, over the same text
    encoder and VAE."""
    import torch
    from diffusers import AutoencoderKLWan, UniPCMultistepScheduler, WanPipeline, WanTransformer3DModel
    from transformers import UMT5Config, UMT5EncoderModel

    from arc_fabric_core.kit.tiny_text import t5_tokenizer

    tokenizer = t5_tokenizer()
    torch.manual_seed(seed)
    text_encoder = UMT5EncoderModel(UMT5Config(vocab_size=len(tokenizer), **TEXT_ENCODER_CONFIG)).eval()
    torch.manual_seed(seed + 1)
    vae = AutoencoderKLWan(**VAE_CONFIG).eval()
    torch.manual_seed(seed + 2 if transformer_seed is None else transformer_seed)
    transformer = WanTransformer3DModel(**(TRANSFORMER_CONFIG if transformer_config is None else transformer_config))
    return WanPipeline(
        tokenizer=tokenizer,
        text_encoder=text_encoder,
        vae=vae,
        transformer=transformer.eval(),
        scheduler=UniPCMultistepScheduler(**SCHEDULER_CONFIG),
    )
