"""Classifier-free guidance, with the rescale that keeps high scales from over-exposing.

The arithmetic is diffusers' (the pipelines' combination, then ``rescale_noise_cfg``),
in the same order, so a plugin's step equals its pipeline's bit for bit.
"""

from __future__ import annotations

import torch


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
