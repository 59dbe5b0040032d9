"""Metrics of a run: checked before any compute, computed after the video, written as
``metrics.json`` beside the video and in the session's folder, with the quality gate's
verdict (a CLIP score under the threshold flags a broken generation)."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import torch

from arc_fabric_core.contract.errors import InputError
from arc_fabric_core.metrics.registry import available, compute

DEFAULT_GATE = {"clip": 0.20}
# Which way is better, for the gate (a higher CLIP score, a lower LPIPS...).
HIGHER_IS_BETTER = {
    "clip": True,
    "psnr": True,
    "ssim": True,
    "temporal": True,
    "lpips": False,
    "piq_lpips": False,
}


def check(
    names: list[str],
    prompt: str | None,
    reference: str | torch.Tensor | None,
    allow_random: bool,
    options: dict[str, Any],
    gate: dict[str, float] | None = None,
    plugins: Any = None,
) -> None:
    """Everything that can be wrong with a metrics request, before the generation runs."""
    metrics = available(plugins)
    for name in names:
        if name not in metrics:
            raise InputError("metrics", f"unknown metric {name!r}; available: {', '.join(sorted(metrics))}")
        if metrics[name].needs_prompt and not prompt:
            raise InputError("metrics", f"{name} scores frames against the prompt: give one")
        if metrics[name].needs_reference and (reference is None or (isinstance(reference, str) and not reference)):
            raise InputError("reference", f"{name} compares against a reference video: give reference=PATH.mp4")
    if isinstance(reference, str) and reference and not Path(reference).is_file():
        raise InputError("reference", f"{reference} is not a file")
    if "clip" in names and not allow_random:
        from arc_fabric_core.metrics.clip import clip_settings

        name, weights = clip_settings(options)
        if weights is None:
            raise InputError(
                "metrics_options.clip_weights",
                f"the clip metric needs {name}'s weights: set $ARC_CLIP_WEIGHTS or metrics_options.clip_weights "
                "to a local open_clip checkpoint, or metrics_allow_random=true (the score then means nothing)",
            )
    has_backbone = options.get("lpips_backbone") or os.environ.get("ARC_LPIPS_BACKBONE")
    if "lpips" in names and not allow_random and not has_backbone:
        raise InputError(
            "metrics_options.lpips_backbone",
            "the lpips metric needs AlexNet's weights: set $ARC_LPIPS_BACKBONE or metrics_options.lpips_backbone, "
            "or metrics_allow_random=true",
        )
    for name in gate or {}:
        if name not in HIGHER_IS_BETTER and name not in metrics:
            raise InputError("quality_gate", f"no metric {name!r} to gate on")


def evaluate(
    names: list[str],
    frames: torch.Tensor,
    prompt: str | None = None,
    reference: str | torch.Tensor | None = None,
    allow_random: bool = False,
    options: dict[str, Any] | None = None,
    gate: dict[str, float] | None = None,
    plugins: Any = None,
) -> dict[str, Any]:
    """The report: every metric's result, and the gate's verdict on those it watches."""
    ref = reference if isinstance(reference, torch.Tensor) else None
    if isinstance(reference, str) and reference:
        from arc_fabric_core.media.video import read_video

        ref = torch.from_numpy(read_video(Path(reference))).to(torch.float32) / 255  # uint8 -> [0, 1]
    results = compute(names, frames, prompt, ref, allow_random, options, plugins)
    checks = []
    for name, threshold in (DEFAULT_GATE if gate is None else gate).items():
        if name not in results:
            continue
        value = results[name].value
        higher = HIGHER_IS_BETTER.get(name, True)
        ok = value >= threshold if higher else value <= threshold
        checks.append({"metric": name, "value": value, "threshold": threshold, "passed": bool(ok)})
    return {
        "metrics": {name: r.as_dict() for name, r in results.items()},
        "random_backbone": sorted(n for n, r in results.items() if r.random_backbone),
        "gate": {"passed": all(c["passed"] for c in checks), "checks": checks},
    }


def write(report: dict[str, Any], *folders: Path) -> list[Path]:
    out = []
    for folder in folders:
        path = Path(folder) / "metrics.json"
        path.write_text(json.dumps(json_safe(report), indent=2, allow_nan=False) + "\n")
        out.append(path)
    return out


def json_safe(value: Any) -> Any:
    """JSON has no infinity (identical videos have an infinite PSNR): "inf" instead."""
    if isinstance(value, float) and math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [json_safe(v) for v in value]
    return value


def summary_lines(report: dict[str, Any]) -> list[str]:
    lines = []
    for name, result in report["metrics"].items():
        value = result["value"]
        shown = "inf" if value == math.inf else f"{value:.4f}"
        lines.append(f"{name}: {shown}" + (" (RANDOM backbone: meaningless)" if result["random_backbone"] else ""))
    for c in report["gate"]["checks"]:
        if not c["passed"]:
            lines.append(
                f"quality gate: {c['metric']} {c['value']:.4f} is past the threshold {c['threshold']}: "
                "this generation looks broken"
            )
    return lines
