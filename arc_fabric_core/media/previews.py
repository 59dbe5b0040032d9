"""Live previews: a cheap picture of the latents at a step, without the VAE.

The latent channels are split into three groups (red, green, blue), each averaged, and
the result stretched to the 2nd-98th percentile and upscaled by the VAE's spatial
compression with nearest neighbours. It shows composition and motion as denoising
goes, not colours: a real decode (``sessions decode --step``) shows those. A model that
decodes as it goes (an autoregressive one, a block at a time) gives real frames instead:
:func:`frame_jpeg` pictures the newest.
"""

from __future__ import annotations

import base64
import io

import numpy as np
import torch


def latent_rgb(latents: torch.Tensor, frame: int | None = None) -> np.ndarray:
    """(B, C, F, H, W) latents -> (H, W, 3) uint8 of one latent frame (default: the middle one)."""
    if latents.ndim != 5:
        raise ValueError(f"expected (B, C, F, H, W) latents, got shape {tuple(latents.shape)}")
    f = latents.shape[2] // 2 if frame is None else frame
    x = latents[0, :, f].detach().to("cpu", torch.float32)  # (C, H, W)
    groups = torch.tensor_split(x, 3, dim=0) if x.shape[0] >= 3 else (x, x, x)
    rgb = torch.stack([g.mean(dim=0) for g in groups], dim=-1)  # (H, W, 3)
    lo, hi = torch.quantile(rgb.flatten(), torch.tensor([0.02, 0.98]))
    scaled = ((rgb - lo) / (hi - lo).clamp_min(1e-6)).clamp(0, 1)
    return (scaled * 255).round().to(torch.uint8).numpy()


def preview_jpeg(latents: torch.Tensor, scale: int = 8, quality: int = 80, max_side: int = 512) -> bytes:
    """A JPEG of :func:`latent_rgb`, upscaled ``scale`` times (capped at ``max_side`` pixels)."""
    from PIL import Image

    image = Image.fromarray(latent_rgb(latents))
    factor = max(1, min(scale, max_side // max(image.size)))
    image = image.resize((image.width * factor, image.height * factor), Image.Resampling.NEAREST)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def frame_jpeg(frames: torch.Tensor, quality: int = 80, max_side: int = 512) -> bytes:
    """A JPEG of the last of ``frames`` ((F, H, W, 3) in [0, 1]), no larger than ``max_side``."""
    from PIL import Image

    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"expected (F, H, W, 3) frames, got shape {tuple(frames.shape)}")
    pixels = (frames[-1].detach().to("cpu", torch.float32).clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    image = Image.fromarray(pixels)
    if max(image.size) > max_side:
        image.thumbnail((max_side, max_side))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def data_url(jpeg: bytes) -> str:
    return "data:image/jpeg;base64," + base64.b64encode(jpeg).decode()
