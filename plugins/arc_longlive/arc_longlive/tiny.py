"""The tiny LongLive checkpoint: the kit's tiny Wan (:mod:`arc_fabric_core.kit.tiny_wan`;
its rotary table covers 32 latent frames, 10 blocks), saved in the diffusers layout of
Wan2.1-T2V-1.3B-Diffusers (the folder a real LongLive variant starts from). Its
scheduler is unused by LongLive's loop; it is there so the folder loads as a
WanPipeline like the real one."""

from __future__ import annotations

from pathlib import Path

from arc_fabric_core.kit.loading import build_once, cache_root
from arc_fabric_core.kit.tiny_wan import TRANSFORMER_CONFIG, tiny_wan_pipeline

__all__ = ["TRANSFORMER_CONFIG", "ensure_tiny_checkpoint"]  # the transformer the causal tests build

TINY_FORMAT = "v1"  # bump when the tiny configuration changes


def ensure_tiny_checkpoint(root: Path | None = None) -> Path:
    """The tiny checkpoint folder, built once (atomically) if missing."""
    folder = (root or cache_root()) / "tiny" / f"longlive-{TINY_FORMAT}"
    return build_once(folder, lambda tmp: tiny_wan_pipeline().save_pretrained(tmp))
