"""LPIPS distance to a reference video (the lpips package, AlexNet features).

lpips ships its learned linear layers but not the AlexNet backbone (torchvision would
download it): give a local torchvision ``alexnet`` state dict through
``options["lpips_backbone"]`` or ``$ARC_LPIPS_BACKBONE``. Without it the distance is
refused, unless a random backbone is asked for (then it says so).
"""

from __future__ import annotations

import functools
import os
import warnings
from pathlib import Path
from typing import Any

import torch

from arc_fabric_core.contract.errors import InputError
from arc_fabric_core.metrics.result import MetricResult


@functools.lru_cache(maxsize=2)
def load_lpips(backbone: str | None) -> Any:
    try:
        import lpips
    except ImportError as exc:
        raise InputError("metrics", "the lpips metric needs lpips: pip install 'arc-fabric-core[metrics]'") from exc
    # pnet_rand: never fetch torchvision's weights; the linear layers come with the package.
    with warnings.catch_warnings(), torch.random.fork_rng(devices=[]):
        warnings.simplefilter("ignore", UserWarning)  # lpips calls torchvision's deprecated `pretrained=`
        torch.manual_seed(0)  # a random backbone (when asked for) is the same every time
        model = lpips.LPIPS(net="alex", pretrained=True, pnet_rand=True, verbose=False)
    if backbone is not None:
        load_alexnet_features(model, Path(backbone))
    return model.eval().requires_grad_(False)


def load_alexnet_features(model: Any, path: Path) -> None:
    """Put torchvision AlexNet ``features.N.*`` weights into lpips's sliced copy of them."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    state = state.get("state_dict", state)
    targets = dict(model.net.named_parameters())  # "slice1.0.weight", ...: N is features' index
    loaded = 0
    for name, param in targets.items():
        _, index, kind = name.split(".")
        key = f"features.{index}.{kind}"
        if key not in state:
            raise InputError("lpips_backbone", f"{path} is not a torchvision alexnet state dict (no {key})")
        with torch.no_grad():
            param.copy_(state[key])
        loaded += 1
    if not loaded:
        raise InputError("lpips_backbone", f"{path}: nothing to load")


@torch.no_grad()
def lpips_distance(
    frames: torch.Tensor,
    reference: torch.Tensor,
    allow_random: bool = False,
    options: dict[str, Any] | None = None,
    **_: Any,
) -> MetricResult:
    options = options or {}
    backbone = options.get("lpips_backbone") or os.environ.get("ARC_LPIPS_BACKBONE") or None
    if backbone is not None and not Path(backbone).is_file():
        raise InputError("lpips_backbone", f"{backbone} is not a file (a torchvision alexnet state dict)")
    if backbone is None and not allow_random:
        raise InputError(
            "lpips_backbone",
            "the lpips metric needs AlexNet's weights: set $ARC_LPIPS_BACKBONE (or metrics_options.lpips_backbone) "
            "to a local torchvision alexnet state dict, or allow a random backbone (the distance then means little)",
        )
    model = load_lpips(backbone)
    a = frames.detach().to("cpu", torch.float32).permute(0, 3, 1, 2) * 2 - 1
    b = reference.detach().to("cpu", torch.float32).permute(0, 3, 1, 2) * 2 - 1
    per = model(a, b).flatten()
    random = backbone is None
    notes = ["AlexNet with RANDOM weights: the distance says little of quality"] if random else []
    return MetricResult("lpips", float(per.mean()), [float(v) for v in per], random_backbone=random, notes=notes)
