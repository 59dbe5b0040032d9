"""LongLive's published checkpoints onto diffusers' Wan transformer.

``longlive_base.pt`` holds the causal generator in Wan's original parameter names, under
``generator`` (or ``generator_ema`` / ``model``), each prefixed ``model.``; ``lora.pt``
holds its LoRA (rank 256, alpha 256: scale 1) in PEFT's names, under ``generator_lora``
(``base_model.model.blocks.{i}.self_attn.q.lora_A.weight`` ...). We rename Wan's names to
diffusers' (the rules of diffusers' Wan conversion script), load the base strictly and
merge the LoRA into the weights it targets: W + scale · B @ A.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from arc_fabric_core.contract.errors import ArcFabricError
from arc_longlive.spec import BASE_FILE, LORA_FILE

# Wan's original names -> diffusers' WanTransformer3DModel names, applied in order as
# substring replacements (norm2 and norm3 swap places, through a placeholder).
WAN_TO_DIFFUSERS: tuple[tuple[str, str], ...] = (
    ("time_embedding.0", "condition_embedder.time_embedder.linear_1"),
    ("time_embedding.2", "condition_embedder.time_embedder.linear_2"),
    ("text_embedding.0", "condition_embedder.text_embedder.linear_1"),
    ("text_embedding.2", "condition_embedder.text_embedder.linear_2"),
    ("time_projection.1", "condition_embedder.time_proj"),
    ("head.modulation", "scale_shift_table"),
    ("head.head", "proj_out"),
    ("modulation", "scale_shift_table"),
    ("ffn.0", "ffn.net.0.proj"),
    ("ffn.2", "ffn.net.2"),
    ("norm2", "norm__placeholder"),
    ("norm3", "norm2"),
    ("norm__placeholder", "norm3"),
    ("self_attn.q", "attn1.to_q"),
    ("self_attn.k", "attn1.to_k"),
    ("self_attn.v", "attn1.to_v"),
    ("self_attn.o", "attn1.to_out.0"),
    ("self_attn.norm_q", "attn1.norm_q"),
    ("self_attn.norm_k", "attn1.norm_k"),
    ("cross_attn.q", "attn2.to_q"),
    ("cross_attn.k", "attn2.to_k"),
    ("cross_attn.v", "attn2.to_v"),
    ("cross_attn.o", "attn2.to_out.0"),
    ("cross_attn.norm_q", "attn2.norm_q"),
    ("cross_attn.norm_k", "attn2.norm_k"),
)
LORA_SCALE = 1.0  # LongLive's adapter: rank 256, alpha 256
_GENERATOR_KEYS = ("generator", "generator_ema", "model")


def to_diffusers_name(name: str) -> str:
    for old, new in WAN_TO_DIFFUSERS:
        name = name.replace(old, new)
    return name


def _load(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ArcFabricError(f"LongLive needs {path.name} in its weights folder; {path} is missing")
    return torch.load(path, map_location="cpu", weights_only=True)


def base_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """The generator of ``longlive_base.pt`` in diffusers' names."""
    raw = _load(path)
    state = next((raw[k] for k in _GENERATOR_KEYS if k in raw and isinstance(raw[k], dict)), raw)
    out = {}
    for name, tensor in state.items():
        name = name.replace("_fsdp_wrapped_module.", "").removeprefix("model.")
        out[to_diffusers_name(name)] = tensor
    return out


def lora_pairs(path: Path) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """diffusers module name -> (A, B) from ``lora.pt``."""
    raw = _load(path)
    state = raw.get("generator_lora", raw)
    pairs: dict[str, dict[str, torch.Tensor]] = {}
    for name, tensor in state.items():
        for part in ("lora_A", "lora_B"):
            marker = f".{part}."
            if marker in name:
                module = name.split(marker)[0].removeprefix("base_model.model.").removeprefix("model.")
                pairs.setdefault(to_diffusers_name(module), {})[part] = tensor
    incomplete = [m for m, p in pairs.items() if len(p) != 2]
    if incomplete:
        raise ArcFabricError(f"{path.name}: LoRA weights without their A or B half for {incomplete[:3]}")
    return {m: (p["lora_A"], p["lora_B"]) for m, p in pairs.items()}


def apply_longlive_weights(transformer: Any, folder: Path | str) -> None:
    """Load LongLive's base generator into ``transformer`` and merge its LoRA."""
    folder = Path(folder)
    state = base_state_dict(folder / BASE_FILE)
    missing, unexpected = transformer.load_state_dict(
        {k: v.to(transformer.dtype) for k, v in state.items()}, strict=False
    )
    if missing or unexpected:
        raise ArcFabricError(
            f"{BASE_FILE} does not fit the Wan transformer: missing {sorted(missing)[:4]}, "
            f"unexpected {sorted(unexpected)[:4]}"
        )
    modules = dict(transformer.named_modules())
    with torch.no_grad():
        for name, (a, b) in lora_pairs(folder / LORA_FILE).items():
            linear = modules.get(name)
            if linear is None or not hasattr(linear, "weight"):
                raise ArcFabricError(f"{LORA_FILE}: the LoRA targets {name}, which the transformer does not have")
            delta = LORA_SCALE * (b.float() @ a.float())
            linear.weight.add_(delta.to(linear.weight.device, linear.weight.dtype))
