"""The tiny DreamDojo: the real classes at tiny sizes with random weights, built offline.

The transformer is diffusers' Cosmos-2.5 one at a tiny size (diffusers' own test sizes;
the RoPE split needs a head dim of at least 12), with the two action MLPs; the VAE is
the tiny Wan VAE of the kit; the empty-prompt embedding a random ``[1, 8, 64]`` tensor.
"""

from __future__ import annotations

from typing import Any

import torch

VAE_CONFIG: dict[str, Any] = dict(
    base_dim=3, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1, temperal_downsample=[False, True, True]
)
TEXT_SHAPE = (1, 8, 64)


def full_config(heads: int, head_dim: int, layers: int) -> dict[str, Any]:
    """diffusers' Cosmos-2.5 Predict base config at a size (2B: 16 x 128, 28 layers)."""
    return dict(
        in_channels=17,
        out_channels=16,
        num_attention_heads=heads,
        attention_head_dim=head_dim,
        num_layers=layers,
        mlp_ratio=4.0,
        text_embed_dim=1024,
        adaln_lora_dim=256,
        max_size=(128, 240, 240),
        patch_size=(1, 2, 2),
        rope_scale=(1.0, 3.0, 3.0),
        concat_padding_mask=True,
        extra_pos_embed_type=None,
        use_crossattn_projection=True,
        crossattn_proj_in_channels=100352,
        encoder_hidden_states_channels=1024,
    )


def tiny_parts(seed: int = 0) -> tuple[Any, Any, torch.Tensor]:
    """(DreamDojoNet, AutoencoderKLWan, text embedding), random from ``seed``, on the CPU in fp32."""
    from diffusers import AutoencoderKLWan, CosmosTransformer3DModel

    from arc_dreamdojo.network import DreamDojoNet

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = DreamDojoNet(CosmosTransformer3DModel(**TRANSFORMER_CONFIG))
        vae = AutoencoderKLWan(**VAE_CONFIG)
        text = torch.randn(TEXT_SHAPE)
    return net, vae, text


# The real config at a tiny size (the RoPE split needs a head dim of at least 12).
TRANSFORMER_CONFIG: dict[str, Any] = {
    **full_config(heads=2, head_dim=16, layers=2),
    "mlp_ratio": 2.0,
    "text_embed_dim": 32,
    "adaln_lora_dim": 4,
    "max_size": (8, 32, 32),
    "crossattn_proj_in_channels": TEXT_SHAPE[2],
    "encoder_hidden_states_channels": 32,
}
