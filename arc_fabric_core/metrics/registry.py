"""Metrics by name: the built-in ones and those plugins register."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

from arc_fabric_core.contract.errors import InputError
from arc_fabric_core.metrics.result import Metric, MetricResult

_REGISTERED: dict[str, Metric] = {}


def register(metric: Metric) -> Metric:
    """Add a metric (a plugin's ``arc_register_metrics`` calls this through its ``register``)."""
    if not metric.name.isidentifier():
        raise InputError("metric", f"a metric's name must be an identifier, got {metric.name!r}")
    _REGISTERED[metric.name] = metric
    return metric


def _builtins() -> dict[str, Metric]:
    from arc_fabric_core.metrics import clip, fidelity, lpips_metric

    return {
        m.name: m
        for m in (
            Metric("clip", clip.clip_score, "CLIP score of each frame against the prompt", needs_prompt=True),
            Metric("psnr", fidelity.psnr, "PSNR against the reference (dB; inf when identical)", needs_reference=True),
            Metric("ssim", fidelity.ssim, "SSIM against the reference (1 when identical)", needs_reference=True),
            Metric(
                "lpips",
                lpips_metric.lpips_distance,
                "LPIPS against the reference (0 when identical)",
                needs_reference=True,
            ),
            Metric("temporal", fidelity.temporal, "consistency of consecutive frames (mean SSIM of each pair)"),
        )
    }


def available(plugins: Any = None) -> dict[str, Metric]:
    """Every metric: built in, registered, and those of the installed plugins."""
    out = {**_builtins(), **_REGISTERED}
    if plugins is not None:
        found: list[Metric] = []
        plugins.hook.arc_register_metrics(register=found.append)
        out.update({m.name: m for m in found})
    return out


def compute(
    names: Iterable[str],
    frames: torch.Tensor,
    prompt: str | None = None,
    reference: torch.Tensor | None = None,
    allow_random: bool = False,
    options: dict[str, Any] | None = None,
    plugins: Any = None,
) -> dict[str, MetricResult]:
    """Compute ``names`` on ``frames`` ((F, H, W, 3) in [0, 1]). Everything is checked
    before the first metric runs."""
    names = list(names)
    metrics = available(plugins)
    unknown = [n for n in names if n not in metrics]
    if unknown:
        raise InputError("metrics", f"unknown metric {unknown[0]!r}; available: {', '.join(sorted(metrics))}")
    _check_frames(frames, "frames")
    for name in names:
        metric = metrics[name]
        if metric.needs_prompt and not prompt:
            raise InputError("metrics", f"{name} scores frames against the prompt: give one")
        if metric.needs_reference:
            if reference is None:
                raise InputError("reference", f"{name} compares against a reference video: give one")
            _check_frames(reference, "reference")
            if reference.shape != frames.shape:
                raise InputError(
                    "reference", f"must have the video's shape {tuple(frames.shape)}, got {tuple(reference.shape)}"
                )
    return {
        name: metrics[name].fn(
            frames, prompt=prompt, reference=reference, allow_random=allow_random, options=options or {}
        )
        for name in names
    }


def _check_frames(frames: torch.Tensor, field_name: str) -> None:
    if not isinstance(frames, torch.Tensor) or frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[0] < 1:
        shape = tuple(frames.shape) if isinstance(frames, torch.Tensor) else type(frames).__name__
        raise InputError(field_name, f"expected frames (F, H, W, 3) in [0, 1], got {shape}")
