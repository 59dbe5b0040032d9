"""Latents to frames through a diffusers VAE.

The engine takes frames as float32 ``(F, H, W, 3)`` in [0, 1]; a VAE gives
``(B, C, F, H, W)`` in [-1, 1], which the pipeline's video processor maps to [0, 1].
A VAE whose config holds per-channel ``latents_mean`` and ``latents_std`` (Wan's)
decodes latents un-normalised by them first.
"""

from __future__ import annotations

from typing import Any

import torch


def _channel_stats(vae: Any, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The config's mean and 1/std per channel, shaped to broadcast over ``like``."""
    config = vae.config
    mean = torch.tensor(config.latents_mean).view(1, config.z_dim, 1, 1, 1).to(like)
    inv_std = 1.0 / torch.tensor(config.latents_std).view(1, config.z_dim, 1, 1, 1).to(like)
    return mean, inv_std


def unnormalize(latents: torch.Tensor, vae: Any) -> torch.Tensor:
    """``latents`` on the VAE's device and in its dtype, un-normalised by its config's
    ``latents_mean`` and ``latents_std``: what its decoder takes. The arithmetic is
    WanPipeline's (divide by 1/std, not multiply by std), so decodes equal it bit for bit."""
    z = latents.to(vae.device, vae.dtype)
    mean, inv_std = _channel_stats(vae, z)
    return z / inv_std + mean


def normalize(latents: torch.Tensor, vae: Any) -> torch.Tensor:
    """The inverse of :func:`unnormalize` (what an encoder's latents become), with the
    arithmetic of diffusers' Wan video-to-video pipeline: (z - mean) * (1/std)."""
    z = latents.to(vae.device, vae.dtype)
    mean, inv_std = _channel_stats(vae, z)
    return (z - mean) * inv_std


def video_frames(video_processor: Any, video: torch.Tensor, size: tuple[int, int] | None = None) -> torch.Tensor:
    """The first video of a decoded batch ``(B, C, F, H, W)`` as the engine takes frames:
    ``(F, H, W, 3)`` float32 in [0, 1], mapped by the pipeline's ``video_processor`` (so
    they equal the pipeline's own output). With ``size`` (height, width) a video of
    another size is resized to it (bicubic, antialiased): a multi-scale model decodes at
    its last pass's size."""
    frames = video_processor.postprocess_video(video, output_type="pt")[0]  # (F, C, H, W) in [0, 1]
    if size is not None and tuple(frames.shape[-2:]) != tuple(size):
        frames = torch.nn.functional.interpolate(
            frames.float(), size=size, mode="bicubic", antialias=True, align_corners=False
        ).clamp(0, 1)
    return frames.permute(0, 2, 3, 1).float()


def decode_frames(vae: Any, video_processor: Any, latents: torch.Tensor) -> torch.Tensor:
    """Normalised latents ``(B, C, F, H, W)`` decoded to frames ``(F, H, W, 3)`` in [0, 1]
    (the first of the batch), as the pipeline decodes them."""
    video = vae.decode(unnormalize(latents, vae), return_dict=False)[0]
    return video_frames(video_processor, video)
