"""Classifier-free guidance, with the rescale that keeps high scales from over-exposing,
and the batching of its two passes into one call.

The arithmetic is diffusers' (the pipelines' combination, then ``rescale_noise_cfg``),
in the same order, so a plugin's step equals its pipeline's bit for bit. Batching
(:func:`batch_guidance`, :func:`run_batched`) changes how the two predictions are made,
never how they are combined.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

logger = logging.getLogger(__name__)


def rescale_noise_cfg(noise_cfg: torch.Tensor, noise_pred_text: torch.Tensor, guidance_rescale: float) -> torch.Tensor:
    """The guided prediction with its standard deviation (per sample) pulled towards the
    conditional one's by ``guidance_rescale`` (0: unchanged, 1: fully): section 3.4 of
    "Common Diffusion Noise Schedules and Sample Steps are Flawed" (Lin et al., 2023)."""
    std_text = noise_pred_text.std(dim=list(range(1, noise_pred_text.ndim)), keepdim=True)
    std_cfg = noise_cfg.std(dim=list(range(1, noise_cfg.ndim)), keepdim=True)
    rescaled = noise_cfg * (std_text / std_cfg)
    return guidance_rescale * rescaled + (1 - guidance_rescale) * noise_cfg


def guided(cond: torch.Tensor, uncond: torch.Tensor, scale: float, rescale: float = 0.0) -> torch.Tensor:
    """``uncond + scale * (cond - uncond)``: the prediction pushed away from the
    unconditional one; with ``rescale`` > 0 rescaled by :func:`rescale_noise_cfg`."""
    out = uncond + scale * (cond - uncond)
    if rescale > 0:
        out = rescale_noise_cfg(out, cond, guidance_rescale=rescale)
    return out


# ---------------------------------------------------------------- batched guidance


def batch_guidance(setting: str, device: torch.device | str, *, pipeline_batches: bool = False) -> bool:
    """Whether a step runs its conditional and unconditional passes as one call of
    twice the batch (``GenerationParams.batch_guidance``): ``on`` yes, ``off`` no,
    ``auto`` (the default) as the model's reference pipeline does — one batch where it
    batches (``pipeline_batches``: LTX), two passes where it does not (Wan, DreamDojo) —
    so that a session equals the pipeline bit for bit on every device (one batch sums
    in another order than two passes: ~1e-6 on the tiny models).

    ``on`` is a speed setting, not a default, because what it saves depends on the
    device and the size: on a CPU the passes are compute-bound. ``benchmarks/
    guidance_batch.py`` on a 2-core CPU, one thread, one Wan CFG step: the mid-size
    random Wan (320 tokens, where per-op overhead still shows) 139 ms batched against
    151 ms in two passes (0.92); a 6x wider one at 1280 tokens 5.83 s against 5.09 s
    (1.15, batching loses). On a GPU a mid-size call leaves the device partly idle, and
    one launch of twice the batch saves the second pass's kernel launches and its read
    of every weight; the GPU preset of that benchmark measures it.

    ``device`` is kept for callers that decide per device; the rule above does not."""
    if setting == "on":
        return True
    if setting == "off":
        return False
    if setting != "auto":
        raise ValueError(f"batch_guidance must be auto, on or off, got {setting!r}")
    return pipeline_batches


class Unbatchable(ValueError):
    """Branches whose inputs cannot share one call (see :func:`stack_branches`)."""


def _pad_to(t: torch.Tensor, length: int) -> torch.Tensor:
    """``t`` padded with zeros along dim 1 to ``length``."""
    if t.shape[1] == length:
        return t
    pad = t.new_zeros(t.shape[0], length - t.shape[1], *t.shape[2:])
    return torch.cat([t, pad], dim=1)


def _stack(key: str, values: list[Any], padded: bool) -> Any:
    first = values[0]
    if isinstance(first, torch.Tensor):
        if not all(isinstance(v, torch.Tensor) and v.ndim == first.ndim and v.ndim > 0 for v in values):
            raise Unbatchable(f"{key}: not tensors of one rank with a batch dim")
        if any(v.shape[1:] != first.shape[1:] for v in values):
            lengths = {v.shape[1] for v in values}
            if not padded or any(v.shape[2:] != first.shape[2:] for v in values):
                raise Unbatchable(f"{key}: shapes {[tuple(v.shape) for v in values]} differ")
            values = [_pad_to(v, max(lengths)) for v in values]
        return torch.cat(values, dim=0)
    if isinstance(first, tuple | list):
        if not all(isinstance(v, type(first)) and len(v) == len(first) for v in values):
            raise Unbatchable(f"{key}: sequences of different lengths")
        return type(first)(_stack(f"{key}[{i}]", [v[i] for v in values], padded) for i in range(len(first)))
    if any(v is not first and v != first for v in values[1:]):
        raise Unbatchable(f"{key}: a value that is not a tensor differs between branches")
    return first


def stack_branches(branches: Sequence[Mapping[str, Any]], masks: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The keyword arguments of one call that runs every branch at once.

    Each branch names the same arguments. A tensor is per sample, batch first: the
    branches' are concatenated along dim 0 in the branches' order (timestep, encoder
    hidden states, attention masks, extra per-sample inputs alike), and so are tensors in
    a tuple or list (position by position). Anything else (a flag, ``None``) must be the
    same in every branch and is passed once; an argument the model broadcasts over the
    batch by itself (a [1, ...] tensor it repeats) belongs in the call, not the branches.

    Sequences of different lengths: ``masks`` maps an argument to its attention mask
    ([B, S]); such an argument is padded with zeros along dim 1 to the longest and its
    mask with zeros (the padding attended to by none). Any other tensor whose shape
    differs between branches raises :class:`Unbatchable`: a model without a mask would
    attend to zero padding and compute something else, so the caller runs the branches
    one at a time instead."""
    masks = dict(masks or {})
    keys = list(branches[0])
    if any(list(b) != keys for b in branches[1:]):
        raise Unbatchable("branches name different arguments")
    padded = {k for k in masks} | set(masks.values())
    return {k: _stack(k, [b[k] for b in branches], k in padded) for k in keys}


def batch_sizes(branches: Sequence[Mapping[str, Any]]) -> list[int]:
    """Each branch's batch: dim 0 of its first tensor argument."""
    sizes = []
    for b in branches:
        first = next((v for v in b.values() if isinstance(v, torch.Tensor)), None)
        if first is None:
            raise Unbatchable("a branch without a tensor argument")
        sizes.append(first.shape[0])
    return sizes


def run_batched(
    call: Callable[..., torch.Tensor],
    branches: Sequence[Mapping[str, Any]],
    masks: Mapping[str, str] | None = None,
) -> list[torch.Tensor] | None:
    """``call`` once on the branches stacked along the batch (:func:`stack_branches`),
    its output split back into one tensor per branch, in the branches' order (a plugin
    lists the conditional branch first unless its pipeline does otherwise). None where
    the branches cannot share a call (differing sequence lengths without a mask): the
    caller then runs its two passes, and a warning says so once per reason."""
    try:
        inputs = stack_branches(branches, masks)
        sizes = batch_sizes(branches)
    except Unbatchable as exc:
        _warn_unbatchable(str(exc))
        return None
    out = call(**inputs)
    if out.shape[0] != sum(sizes):
        raise ValueError(f"a batched call of {sum(sizes)} returned a batch of {out.shape[0]}")
    return list(out.split(sizes, dim=0))


@functools.cache
def _warn_unbatchable(reason: str) -> None:
    logger.warning("batch_guidance: two passes instead of one batch (%s)", reason)
