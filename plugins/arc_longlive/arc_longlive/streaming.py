"""Decoding a video a block at a time, as LongLive makes it.

The Wan VAE decodes latent frame after latent frame with a causal cache (each causal
convolution keeps the last frames of its input). We keep that cache — our own list,
not the VAE's, so one shared VAE can stream several sessions — from one block to the
next: every block's pixel frames come out as soon as the block is made (9 for the first,
whose first latent frame decodes to one frame, 12 for each after), and together they
are the one-shot decode of the whole video (to float tolerance).
"""

from __future__ import annotations

from typing import Any

import torch

from arc_fabric_core.kit.vae import unnormalize


class StreamingDecoder:
    def __init__(self, vae: Any) -> None:
        if getattr(vae.config, "patch_size", None) is not None:
            raise ValueError("streaming decode supports the Wan 2.1 VAE (no patchified latents)")
        self.vae = vae
        self.reset()

    def reset(self) -> None:
        """Back to the first frame (the cache emptied)."""
        self._cache: list[Any] = [None] * self.vae._cached_conv_counts["decoder"]
        self.frames_in = 0  # latent frames decoded so far

    def to(self, device: torch.device | str) -> StreamingDecoder:
        """Move the causal cache (parked in CPU memory while its session waits; brought
        back by the next decode)."""
        self._cache = [c.to(device) if isinstance(c, torch.Tensor) else c for c in self._cache]
        return self

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """The pixel frames of the next latent frames ``latents`` [B, 16, f, h, w]: float in
        [0, 1], layout (F, H, W, 3) (the first of the batch), as ``arc_decode`` gives them."""
        vae = self.vae
        self.to(vae.device)
        x = vae.post_quant_conv(unnormalize(latents, vae))
        out = []
        for i in range(x.shape[2]):
            first = self.frames_in == 0
            out.append(vae.decoder(x[:, :, i : i + 1], feat_cache=self._cache, feat_idx=[0], first_chunk=first))
            self.frames_in += 1
        video = torch.cat(out, dim=2).clamp(-1.0, 1.0)
        # diffusers' video processor's arithmetic: [-1, 1] -> [0, 1].
        return (video[0].permute(1, 2, 3, 0) / 2 + 0.5).clamp(0, 1).float()
