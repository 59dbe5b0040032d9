"""The tiny Wan checkpoint: real classes, tiny sizes, random weights, built offline.

It is saved in the diffusers layout of the published checkpoints and then loaded
through the same code as the real weights, so the tiny variant exercises every path.
Its configuration is the kit's tiny Wan (:mod:`arc_fabric_core.kit.tiny_wan`); Wan
2.1's own is the stand-in for 14B.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from arc_fabric_core.kit.loading import build_once, cache_root
from arc_fabric_core.kit.tiny_wan import TRANSFORMER_CONFIG, tiny_wan_pipeline

TINY_FORMAT = "v1"  # bump when the tiny configuration changes

# The stand-in for 14B: a bigger transformer (about 3x the per-step cost) over the same
# tiny text encoder and VAE, so that the two hand latents to each other in a hybrid
# schedule, as 1.3B and 14B do.
LARGE_TRANSFORMER_CONFIG = {**TRANSFORMER_CONFIG, "num_attention_heads": 4, "num_layers": 4, "ffn_dim": 64}


def build_tiny_pipeline(seed: int = 0, large: bool = False) -> Any:
    """Build the tiny components with random weights drawn from ``seed``; ``large``
    swaps in the bigger transformer (its weights drawn from their own seed)."""
    if large:
        return tiny_wan_pipeline(seed, LARGE_TRANSFORMER_CONFIG, transformer_seed=seed + 3)
    return tiny_wan_pipeline(seed)


def ensure_tiny_checkpoint(root: Path | None = None, large: bool = False) -> Path:
    """Return the tiny checkpoint folder (``large``: the 14B stand-in), building it once
    (atomically) if missing."""
    folder = (root or cache_root()) / "tiny" / f"wan21{'-large' if large else ''}-{TINY_FORMAT}"
    return build_once(folder, lambda tmp: build_tiny_pipeline(large=large).save_pretrained(tmp))
