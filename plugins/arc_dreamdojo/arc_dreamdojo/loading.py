"""A DreamDojo from a local folder in the published layout.

The folder holds the network (``model_ema_bf16.pt`` or a DCP ``model/`` folder, the
authors' key names), the Wan 2.1 VAE (``tokenizer.pth`` or a diffusers ``vae/``), the
empty prompt's embedding and the action statistics (:mod:`.weights` reads each). The
transformer's size is read from the checkpoint's shapes (2B: 2048 channels in 16 heads,
28 blocks; 14B: 5120, 40, 36), so one loader serves every variant; a checkpoint whose
size is not the variant's is said, not refused (a post-trained 2B under a 14B name
would otherwise run silently).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from arc_dreamdojo.spec import SIZES
from arc_fabric_core.contract.errors import WeightsError
from arc_fabric_core.contract.models import ModelRef

log = logging.getLogger(__name__)

_BLOCK = re.compile(r"blocks\.(\d+)\.")


def infer_config(state: Mapping[str, Any]) -> tuple[dict[str, Any], int]:
    """diffusers' Cosmos-2.5 transformer config and the action dim, from the authors'
    state dict's shapes (EMA keys where present)."""
    from arc_dreamdojo.tiny import full_config
    from arc_dreamdojo.weights import EMA_PREFIX, NET_PREFIX

    prefix = EMA_PREFIX if any(k.startswith(EMA_PREFIX) for k in state) else NET_PREFIX

    def shape(name: str) -> tuple[int, ...]:
        key = prefix + name
        if key not in state or not isinstance(state[key], torch.Tensor):
            raise WeightsError("weights", f"the checkpoint has no {key}: not a DreamDojo network")
        return tuple(state[key].shape)

    hidden = shape("x_embedder.proj.1.weight")[0]
    head_dim = shape("blocks.0.self_attn.q_norm.weight")[0]
    layers = 1 + max(int(m.group(1)) for k in state if k.startswith(prefix) and (m := _BLOCK.match(k[len(prefix) :])))
    config = full_config(hidden // head_dim, head_dim, layers)
    config["mlp_ratio"] = shape("blocks.0.mlp.layer1.weight")[0] / hidden
    config["adaln_lora_dim"] = shape("blocks.0.adaln_modulation_self_attn.1.weight")[0]
    proj_out, proj_in = shape("crossattn_proj.0.weight")
    config["crossattn_proj_in_channels"] = proj_in
    config["encoder_hidden_states_channels"] = config["text_embed_dim"] = proj_out
    action_dim = shape("action_embedder_B_D.fc1.weight")[1] // 4
    return config, action_dim


def load_folder(model: ModelRef) -> tuple[Any, Any, torch.Tensor]:
    """(DreamDojoNet, AutoencoderKLWan, text embedding [1, L, C]) on the CPU, fp32 VAE."""
    from diffusers import CosmosTransformer3DModel

    from arc_dreamdojo.network import DreamDojoNet
    from arc_dreamdojo.weights import TEXT_FILE, apply_net_state, load_net_state, load_text_embedding, load_vae

    assert model.weights is not None
    folder = Path(model.weights)
    state = load_net_state(folder)
    config, action_dim = infer_config(state)
    size = SIZES.get(model.variant.name.split("-", 1)[0])
    heads, layers = config["num_attention_heads"], config["num_layers"]
    if size is not None and (heads, layers) != (size.heads, size.layers):
        log.warning(
            "%s: the checkpoint in %s has %d heads and %d blocks; variant %s has %d and %d",
            model.spec.name,
            folder,
            heads,
            layers,
            model.variant.name,
            size.heads,
            size.layers,
        )
    with torch.device("meta"):
        transformer = CosmosTransformer3DModel(**config)
    transformer = transformer.to_empty(device="cpu")
    net = DreamDojoNet(transformer, action_dim=action_dim).to(torch.float32)
    apply_net_state(net, state)
    del state
    vae = load_vae(folder, torch.float32)
    text = load_text_embedding(folder / TEXT_FILE)
    return net, vae, text
