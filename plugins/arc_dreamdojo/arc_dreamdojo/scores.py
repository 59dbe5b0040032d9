"""DreamDojo's metrics in the core's registry: ``piq_psnr``, ``piq_ssim`` and ``piq_lpips``
of a video against its reference, as the authors compute them (:mod:`.metrics`: piq at
its defaults, per frame then the mean). ``metrics_options`` may name the LPIPS files
(``vgg16``, ``lpips_linear``); else ``$ARC_DREAMDOJO_VGG16`` and
``$ARC_DREAMDOJO_LPIPS_LINEAR``; without them LPIPS runs on seeded random weights only
when that is allowed, and says so."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from arc_fabric_core.metrics.result import Metric, MetricResult


def _score(name: str) -> Any:
    def score(
        frames: torch.Tensor,
        reference: torch.Tensor | None = None,
        allow_random: bool = False,
        options: dict[str, Any] | None = None,
        **_: Any,
    ) -> MetricResult:
        from arc_dreamdojo.metrics import rollout_metrics

        assert reference is not None
        options = options or {}
        vgg16, linear = options.get("vgg16"), options.get("lpips_linear")
        result = rollout_metrics(
            frames,
            reference,
            lpips=name == "lpips",
            vgg16=Path(vgg16) if vgg16 else None,
            lpips_linear=Path(linear) if linear else None,
            allow_random=allow_random,
        )
        return MetricResult(
            f"piq_{name}",
            float(result[name]),
            [float(v) for v in result["per_frame"][name]],
            random_backbone=bool(result["random_backbone"]) and name == "lpips",
            notes=list(result["notes"]) if name == "lpips" else [],
        )

    return score


METRICS = (
    Metric(
        "piq_psnr",
        _score("psnr"),
        "PSNR against the reference as piq.psnr, per frame then the mean (dB)",
        needs_reference=True,
    ),
    Metric(
        "piq_ssim",
        _score("ssim"),
        "SSIM against the reference as piq.ssim (its 2x pooling at 480x640)",
        needs_reference=True,
    ),
    Metric("piq_lpips", _score("lpips"), "LPIPS (VGG16) against the reference as piq.LPIPS", needs_reference=True),
)
