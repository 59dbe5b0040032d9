"""Checkpoints in the authors' layout, written from our modules: for tests and tiny models.

The inverse of :mod:`arc_dreamdojo.weights`' renaming, written out on its own (not derived
from the loader's tables) so that a round trip checks one against the other. What it writes
carries the keys a real checkpoint carries and the loader must drop: the training counters,
the RoPE buffers and Transformer Engine's ``_extra_state`` (both as an empty uint8 tensor,
newer TE, and as an ``io.BytesIO``, older TE). Runtime code does not import this module.
"""

from __future__ import annotations

import io
import re
import warnings
from pathlib import Path
from typing import Any

import torch
import torch.distributed.checkpoint as torch_dcp
from diffusers import AutoencoderKLWan

from arc_dreamdojo.network import DreamDojoNet
from arc_dreamdojo.weights import EMA_PREFIX, NET_PREFIX

_MODULES = {
    "patch_embed.proj": "x_embedder.proj.1",
    "time_embed.t_embedder.linear_1": "t_embedder.1.linear_1",
    "time_embed.t_embedder.linear_2": "t_embedder.1.linear_2",
    "time_embed.norm": "t_embedding_norm",
    "norm_out.linear_1": "final_layer.adaln_modulation.1",
    "norm_out.linear_2": "final_layer.adaln_modulation.2",
    "proj_out": "final_layer.linear",
    "crossattn_proj.0": "crossattn_proj.0",
}
_BLOCK_PARTS = {
    "attn1.to_q": "self_attn.q_proj",
    "attn1.to_k": "self_attn.k_proj",
    "attn1.to_v": "self_attn.v_proj",
    "attn1.to_out.0": "self_attn.output_proj",
    "attn1.norm_q": "self_attn.q_norm",
    "attn1.norm_k": "self_attn.k_norm",
    "attn2.to_q": "cross_attn.q_proj",
    "attn2.to_k": "cross_attn.k_proj",
    "attn2.to_v": "cross_attn.v_proj",
    "attn2.to_out.0": "cross_attn.output_proj",
    "attn2.norm_q": "cross_attn.q_norm",
    "attn2.norm_k": "cross_attn.k_norm",
    "norm1.linear_1": "adaln_modulation_self_attn.1",
    "norm1.linear_2": "adaln_modulation_self_attn.2",
    "norm2.linear_1": "adaln_modulation_cross_attn.1",
    "norm2.linear_2": "adaln_modulation_cross_attn.2",
    "norm3.linear_1": "adaln_modulation_mlp.1",
    "norm3.linear_2": "adaln_modulation_mlp.2",
    "ff.net.0.proj": "mlp.layer1",
    "ff.net.2": "mlp.layer2",
}
_BLOCK = re.compile(r"transformer\.transformer_blocks\.(\d+)\.(.+)")


def ours_to_author(key: str, prefix: str = NET_PREFIX) -> str:
    """Our state-dict key -> the authors' name under ``prefix`` (``net.`` or ``net_ema.``)."""
    if key.startswith("action_embedder_B_"):
        return prefix + key
    module, _, leaf = key.rpartition(".")
    if module.startswith("transformer.") and module[len("transformer.") :] in _MODULES:
        return f"{prefix}{_MODULES[module[len('transformer.') :]]}.{leaf}"
    block = _BLOCK.fullmatch(module)
    if block and block.group(2) in _BLOCK_PARTS:
        return f"{prefix}blocks.{block.group(1)}.{_BLOCK_PARTS[block.group(2)]}.{leaf}"
    raise KeyError(key)


def _dropped_entries(net: DreamDojoNet, prefix: str) -> dict[str, Any]:
    """The non-weights a real checkpoint holds, with the values the authors' modules give them."""
    config = net.transformer.config
    head_dim = config.attention_head_dim
    len_t, len_h, len_w = (size // patch for size, patch in zip(config.max_size, config.patch_size, strict=True))
    dim_h = head_dim // 6 * 2
    dim_t = head_dim - 2 * dim_h
    entries: dict[str, Any] = {
        "accum_video_sample_counter": torch.tensor(7, dtype=torch.int64),
        "accum_image_sample_counter": torch.tensor(0, dtype=torch.int64),
        "accum_iteration": torch.tensor(50000, dtype=torch.int64),
        "accum_train_in_hours": torch.tensor(12.5),
        "pos_embedder.seq": torch.arange(max(len_h, len_w, len_t), dtype=torch.float),
        "pos_embedder.dim_spatial_range": torch.arange(0, dim_h, 2)[: dim_h // 2].float() / dim_h,
        "pos_embedder.dim_temporal_range": torch.arange(0, dim_t, 2)[: dim_t // 2].float() / dim_t,
        "t_embedding_norm._extra_state": io.BytesIO(b""),  # older Transformer Engine
    }
    for index in range(config.num_layers):
        for attention in ("self_attn", "cross_attn"):
            for norm in ("q_norm", "k_norm"):
                entries[f"blocks.{index}.{attention}.{norm}._extra_state"] = torch.empty(0, dtype=torch.uint8)
    return {prefix + key: value for key, value in entries.items()}


def author_state(net: DreamDojoNet, prefix: str = NET_PREFIX) -> dict[str, Any]:
    """``net``'s weights under the authors' names, plus the entries a loader must drop."""
    state: dict[str, Any] = {ours_to_author(k, prefix): v.detach().clone() for k, v in net.state_dict().items()}
    state.update(_dropped_entries(net, prefix))
    return state


def save_author_checkpoint(net: DreamDojoNet, path: Path, dcp: bool = False, ema: DreamDojoNet | None = None) -> None:
    """Write ``net`` as ``net.*`` (and ``ema``, if given, as ``net_ema.*``) to ``path``: one
    flat ``.pt`` (``torch.save``) or, with ``dcp``, a DCP folder (``__0_0.distcp`` +
    ``.metadata``) written by torch's DCP in one process."""
    state = author_state(net, NET_PREFIX)
    if ema is not None:
        state.update(author_state(ema, EMA_PREFIX))
    if dcp:
        path.mkdir(parents=True, exist_ok=True)
        with warnings.catch_warnings():  # one process is the intent
            warnings.filterwarnings("ignore", message="torch.distributed is disabled", category=UserWarning)
            torch_dcp.save(state, storage_writer=torch_dcp.FileSystemWriter(str(path)), no_dist=True)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)


# ---------------------------------------------------------------------------- the Wan VAE

_RESNET_PARTS = {
    "norm1.gamma": "residual.0.gamma",
    "conv1.weight": "residual.2.weight",
    "conv1.bias": "residual.2.bias",
    "norm2.gamma": "residual.3.gamma",
    "conv2.weight": "residual.6.weight",
    "conv2.bias": "residual.6.bias",
    "conv_shortcut.weight": "shortcut.weight",
    "conv_shortcut.bias": "shortcut.bias",
}
_ENDS = {
    "conv_in.": "conv1.",
    "norm_out.gamma": "head.0.gamma",
    "conv_out.": "head.2.",
}


def _resnet(part: str) -> str:
    return _RESNET_PARTS.get(part, part)  # a resample's resample.1.* / time_conv.* keep their names


def wan_vae_key(key: str, num_res_blocks: int) -> str:
    """diffusers' AutoencoderKLWan key -> Wan 2.1's original one (``WanVAE_``: a flat
    ``encoder.downsamples``, ``middle`` = resnet, attention, resnet, ``head`` = norm, SiLU,
    conv; the decoder's ``upsamples`` flat: ``num_res_blocks + 1`` resnets then a resample
    per stage)."""
    if key.startswith("quant_conv."):
        return "conv1." + key[len("quant_conv.") :]
    if key.startswith("post_quant_conv."):
        return "conv2." + key[len("post_quant_conv.") :]
    side, _, rest = key.partition(".")
    for ours, theirs in _ENDS.items():
        if rest.startswith(ours):
            return f"{side}.{theirs}{rest[len(ours) :]}"
    if match := re.fullmatch(r"mid_block\.resnets\.(\d)\.(.+)", rest):
        return f"{side}.middle.{2 * int(match.group(1))}.{_resnet(match.group(2))}"
    if match := re.fullmatch(r"mid_block\.attentions\.0\.(.+)", rest):
        return f"{side}.middle.1.{match.group(1)}"
    if match := re.fullmatch(r"down_blocks\.(\d+)\.(.+)", rest):
        return f"{side}.downsamples.{match.group(1)}.{_resnet(match.group(2))}"
    stride = num_res_blocks + 2  # resnets and one resample per decoder stage
    if match := re.fullmatch(r"up_blocks\.(\d+)\.resnets\.(\d+)\.(.+)", rest):
        index = int(match.group(1)) * stride + int(match.group(2))
        return f"{side}.upsamples.{index}.{_resnet(match.group(3))}"
    if match := re.fullmatch(r"up_blocks\.(\d+)\.upsamplers\.0\.(.+)", rest):
        return f"{side}.upsamples.{int(match.group(1)) * stride + num_res_blocks + 1}.{match.group(2)}"
    raise KeyError(key)


def save_original_wan_vae(vae: AutoencoderKLWan, path: Path) -> dict[str, torch.Tensor]:
    """Write ``vae`` as Wan 2.1's ``Wan2.1_VAE.pth`` (= the authors' ``tokenizer.pth``) and
    return what was written."""
    blocks = vae.config.num_res_blocks
    state = {wan_vae_key(k, blocks): v.detach().clone() for k, v in vae.state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    return state
