"""PSNR and SSIM against a reference, and consecutive-frame consistency: no backbone."""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

from arc_fabric_core.metrics.result import MetricResult


def _frames(x: torch.Tensor) -> torch.Tensor:
    """(F, H, W, 3) -> (F, 3, H, W) float64 (the sums of SSIM's windows are exact enough)."""
    return x.detach().to("cpu", torch.float64).permute(0, 3, 1, 2).clamp(0, 1)


def psnr(frames: torch.Tensor, reference: torch.Tensor, **_: Any) -> MetricResult:
    a, b = _frames(frames), _frames(reference)
    mse = ((a - b) ** 2).flatten(1).mean(dim=1)
    per = [math.inf if m == 0 else 10 * math.log10(1.0 / float(m)) for m in mse]
    total = float(mse.mean())
    return MetricResult("psnr", math.inf if total == 0 else 10 * math.log10(1.0 / total), per)


def _gaussian(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float64) - size // 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    g = g / g.sum()
    return (g[:, None] * g[None, :]).expand(3, 1, size, size).contiguous()


def ssim_pairs(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """SSIM of each frame pair (Wang et al. 2004: Gaussian window 11, sigma 1.5, K1 0.01,
    K2 0.03, data range 1), averaged over channels and pixels. a, b: (F, 3, H, W)."""
    window = _gaussian(size=(min(11, a.shape[-1], a.shape[-2]) - 1) // 2 * 2 + 1)  # odd, within the frame
    c1, c2 = 0.01**2, 0.03**2

    def blur(x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, window, groups=3)

    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a**2
    var_b = blur(b * b) - mu_b**2
    cov = blur(a * b) - mu_a * mu_b
    score = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return score.flatten(1).mean(dim=1)


def ssim(frames: torch.Tensor, reference: torch.Tensor, **_: Any) -> MetricResult:
    per = ssim_pairs(_frames(frames), _frames(reference))
    return MetricResult("ssim", float(per.mean()), [float(v) for v in per])


def temporal(frames: torch.Tensor, **_: Any) -> MetricResult:
    x = _frames(frames)
    if x.shape[0] < 2:
        return MetricResult("temporal", 1.0, [], notes=["one frame: nothing to compare"])
    per = ssim_pairs(x[:-1], x[1:])
    return MetricResult("temporal", float(per.mean()), [float(v) for v in per])
