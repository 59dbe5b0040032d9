"""CLIP score: how well each frame matches the prompt (open_clip).

The model is ``options["clip_model"]`` or ``$ARC_CLIP_MODEL`` (default ``ViT-B-32``; or the
path of an open_clip model config ``NAME.json``), its
weights a local open_clip checkpoint from ``options["clip_weights"]`` or
``$ARC_CLIP_WEIGHTS``. open_clip ships its tokenizer, not its weights: without a
checkpoint the score is refused, unless random weights are asked for (then it says so).
The score is the cosine similarity of the frame's and the prompt's embeddings (CLIPScore
without its 100x and clipping): about 0.3 for a good match with ViT-B-32, under 0.2 for
a broken generation.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from arc_fabric_core.contract.errors import InputError
from arc_fabric_core.metrics.result import MetricResult

DEFAULT_MODEL = "ViT-B-32"
# CLIP's image normalisation (open_clip's OPENAI_DATASET_MEAN / STD).
MEAN = (0.48145466, 0.4578275, 0.40821073)
STD = (0.26862954, 0.26130258, 0.27577711)


@functools.lru_cache(maxsize=2)
def load_clip(model_name: str, weights: str | None) -> tuple[Any, Any]:
    """(model, tokenizer), kept for the process (a sweep scores many videos)."""
    try:
        import open_clip
    except ImportError as exc:
        raise InputError("metrics", "the clip metric needs open_clip: pip install 'arc-fabric-core[metrics]'") from exc
    if model_name.endswith(".json"):  # a config of one's own: registered under its file's stem
        open_clip.add_model_config(model_name)
        model_name = Path(model_name).stem
    with torch.random.fork_rng(devices=[]):  # random weights (when asked for) are the same every time
        torch.manual_seed(0)
        model = open_clip.create_model(model_name, pretrained=weights)
    return model.eval().requires_grad_(False), open_clip.get_tokenizer(model_name)


def clip_settings(options: dict[str, Any]) -> tuple[str, str | None]:
    name = str(options.get("clip_model") or os.environ.get("ARC_CLIP_MODEL") or DEFAULT_MODEL)
    weights = options.get("clip_weights") or os.environ.get("ARC_CLIP_WEIGHTS") or None
    if weights is not None and not Path(weights).is_file():
        raise InputError("clip_weights", f"{weights} is not a file (an open_clip checkpoint of {name})")
    return name, weights


@torch.no_grad()
def clip_score(
    frames: torch.Tensor, prompt: str, allow_random: bool = False, options: dict[str, Any] | None = None, **_: Any
) -> MetricResult:
    name, weights = clip_settings(options or {})
    if weights is None and not allow_random:
        raise InputError(
            "clip_weights",
            f"the clip metric needs {name}'s weights: set $ARC_CLIP_WEIGHTS (or metrics_options.clip_weights) to a "
            "local open_clip checkpoint, or allow random weights (the score then means nothing)",
        )
    model, tokenizer = load_clip(name, weights)
    size = model.visual.image_size
    size = size if isinstance(size, tuple) else (size, size)
    x = frames.detach().to("cpu", torch.float32).permute(0, 3, 1, 2)
    # Resize the short side, centre-crop (open_clip's preprocessing), normalise.
    scale = max(size[0] / x.shape[2], size[1] / x.shape[3])
    h, w = max(size[0], round(x.shape[2] * scale)), max(size[1], round(x.shape[3] * scale))
    x = F.interpolate(x, size=(h, w), mode="bicubic", align_corners=False, antialias=True).clamp(0, 1)
    top, left = (h - size[0]) // 2, (w - size[1]) // 2
    x = x[:, :, top : top + size[0], left : left + size[1]]
    x = (x - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)
    image = F.normalize(model.encode_image(x), dim=-1)
    text = F.normalize(model.encode_text(tokenizer([prompt])), dim=-1)
    per = (image @ text.T).squeeze(1)
    random = weights is None
    notes = [f"{name} with RANDOM weights: the score says nothing of quality"] if random else []
    return MetricResult("clip", float(per.mean()), [float(v) for v in per], random_backbone=random, notes=notes)
