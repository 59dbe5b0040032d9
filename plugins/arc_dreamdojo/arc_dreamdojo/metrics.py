"""DreamDojo's rollout metrics: PSNR, SSIM and LPIPS of a predicted clip against its ground truth,
computed the way the DreamDojo evaluation does (``piq`` on (F, 3, H, W) frames in [0, 1], every
frame including the first, each metric per frame then ``.mean()``), then the mean over clips.

``piq.LPIPS()`` downloads torchvision's ImageNet VGG16 and piq's LPIPS linear layers; nothing is
ever downloaded here. Both come from local files instead (``vgg16=`` / ``$ARC_DREAMDOJO_VGG16``,
``lpips_linear=`` / ``$ARC_DREAMDOJO_LPIPS_LINEAR``) and go into piq's own ``LPIPS`` module,
built without its download step. Without them LPIPS is refused, unless random weights are
allowed: then a seeded random network is used, and the result says so.
"""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path
from typing import Any

import piq
import torch
from piq.perceptual import IMAGENET_MEAN, IMAGENET_STD, LPIPS, VGG16_LAYERS, ContentLoss
from torchvision.models.vgg import cfgs, make_layers

from arc_fabric_core.contract.errors import InputError
from arc_fabric_core.metrics.report import json_safe

ENV_VGG16 = "ARC_DREAMDOJO_VGG16"
ENV_LPIPS_LINEAR = "ARC_DREAMDOJO_LPIPS_LINEAR"
# The files piq.LPIPS() would fetch (torch hub's cache names them so), for the error messages.
VGG16_FILE = "vgg16-397923af.pth"  # torchvision VGG16_Weights.IMAGENET1K_V1
LPIPS_LINEAR_URL = LPIPS._weights_url  # .../v0.4.0/lpips_weights.pt: a list of 5 (1, C, 1, 1) tensors

# piq.LPIPS's layers, and the channels of their features (the linear layers' sizes).
LPIPS_LAYERS = ("relu1_2", "relu2_2", "relu3_3", "relu4_3", "relu5_3")
LPIPS_CHANNELS = (64, 128, 256, 512, 512)
RANDOM_SEED = 0
# Frames per LPIPS forward: VGG16's activations at 480x640 are ~80 MB a frame and image, so a
# whole clip at once (as the authors do) can run out of memory. Each frame's distance is its own.
LPIPS_CHUNK = 8


def rollout_metrics(
    pred: torch.Tensor,
    truth: torch.Tensor,
    lpips: bool = True,
    vgg16: Path | None = None,
    lpips_linear: Path | None = None,
    allow_random: bool = False,
) -> dict[str, Any]:
    """PSNR, SSIM and LPIPS of ``pred`` against ``truth``, both (F, H, W, 3) floats in [0, 1].

    As the authors: ``piq.psnr``, ``piq.ssim`` and ``piq.LPIPS`` with their defaults, pred as x and
    truth as y, float32, over every frame (frame 0, the given one, included); the value is the mean
    of the per-frame scores. Nothing is resized: the authors compare at 480x640, so pass frames of
    that size to compare with their numbers (piq.ssim average-pools by max(1, round(min(H, W) / 256)),
    2 at 480x640, so SSIM depends on the size). They also measure uint8 frames (``x / 255``): quantize
    the prediction the same way to match them to the last digit.

    LPIPS needs VGG16's ImageNet weights (a torchvision ``vgg16`` state dict; ``features.*`` is
    enough) and piq's LPIPS linear layers (its ``lpips_weights.pt``, or the lpips package's
    ``weights/v0.1/vgg.pth``), from the arguments or ``$ARC_DREAMDOJO_VGG16`` /
    ``$ARC_DREAMDOJO_LPIPS_LINEAR``. Missing ones are refused unless ``allow_random``: then they
    are seeded random weights, ``random_backbone`` is true and ``notes`` says which.
    """
    if pred.shape != truth.shape:
        raise InputError("truth", f"pred {tuple(pred.shape)} and truth {tuple(truth.shape)} must have the same shape")
    if pred.ndim != 4 or pred.shape[-1] != 3 or pred.shape[0] < 1:
        raise InputError("pred", f"expected frames (F, H, W, 3) in [0, 1], got {tuple(pred.shape)}")
    notes: list[str] = []
    random_backbone = False
    model = None
    if lpips:
        vgg_path = _weights_path(vgg16, ENV_VGG16, "vgg16")
        linear_path = _weights_path(lpips_linear, ENV_LPIPS_LINEAR, "lpips_linear")
        missing = [what for what, path in (("VGG16", vgg_path), ("LPIPS linear layers", linear_path)) if path is None]
        if missing and not allow_random:
            raise InputError(
                "vgg16" if vgg_path is None else "lpips_linear",
                f"LPIPS needs local weights (nothing is downloaded): set ${ENV_VGG16} to a torchvision vgg16 state "
                f"dict ({VGG16_FILE}) and ${ENV_LPIPS_LINEAR} to piq's lpips_weights.pt ({LPIPS_LINEAR_URL}), "
                "or allow random weights (the distance then says nothing of quality)",
            )
        if missing:
            random_backbone = True
            notes.append(
                f"LPIPS with RANDOM {' and '.join(missing)} weights (seed {RANDOM_SEED}): says nothing of quality"
            )
        model = lpips_model(str(vgg_path) if vgg_path else None, str(linear_path) if linear_path else None)
    else:
        notes.append("LPIPS not computed")

    # The authors' x_batch / y_batch: clamped, float32, channels first as a view of (F, H, W, 3) memory
    # (not made contiguous: the convolutions' sums follow the layout, to the last float bit).
    x = pred.detach().to(torch.float32).clamp(0, 1).permute(0, 3, 1, 2)
    y = truth.detach().to(x.device, torch.float32).clamp(0, 1).permute(0, 3, 1, 2)
    with torch.no_grad():
        # reduction="none" keeps the per-frame scores; their .mean() is piq's default reduction.
        psnr = piq.psnr(x, y, reduction="none")
        ssim = piq.ssim(x, y, reduction="none")
        distance = None
        if model is not None:
            distance = torch.cat(
                [model(x[i : i + LPIPS_CHUNK], y[i : i + LPIPS_CHUNK]) for i in range(0, len(x), LPIPS_CHUNK)]
            )
    frames, height, width = pred.shape[:3]
    return {
        "psnr": float(psnr.mean()),
        "ssim": float(ssim.mean()),
        "lpips": None if distance is None else float(distance.mean()),
        "frames": int(frames),
        "height": int(height),
        "width": int(width),
        "per_frame": {
            "psnr": psnr.tolist(),
            "ssim": ssim.tolist(),
            "lpips": [] if distance is None else distance.tolist(),
        },
        "notes": notes,
        "random_backbone": random_backbone,
    }


def _weights_path(given: Path | None, env: str, field: str) -> Path | None:
    value = given if given is not None else (os.environ.get(env) or None)
    if value is None:
        return None
    path = Path(value).expanduser()
    if not path.is_file():
        raise InputError(field, f"{path} is not a file (from {'the argument' if given is not None else '$' + env})")
    return path


@functools.lru_cache(maxsize=2)
def lpips_model(vgg16: str | None, lpips_linear: str | None) -> LPIPS:
    """piq's LPIPS with these weights (None: seeded random ones), built without its downloads:
    ``LPIPS.__init__`` only fetches the two files, then hands them to ``ContentLoss.__init__``."""
    if vgg16 is not None:
        with torch.device("meta"):  # no random init to throw away: the file's tensors are assigned
            features = make_layers(cfgs["D"])  # torchvision's vgg16().features, without its classifier
        _load_vgg16_features(features, Path(vgg16))
    else:
        with torch.random.fork_rng(devices=[]):  # the same random weights every time; the caller's RNG kept
            torch.manual_seed(RANDOM_SEED)
            features = make_layers(cfgs["D"])
    if lpips_linear is not None:
        weights = load_lpips_linear(Path(lpips_linear))
    else:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(RANDOM_SEED)
            weights = [torch.rand(1, c, 1, 1) * 0.2 for c in LPIPS_CHANNELS]  # ~ the real ones' scale (mean ~0.1)
    model = LPIPS.__new__(LPIPS)
    ContentLoss.__init__(
        model,
        feature_extractor=features,
        layers=[VGG16_LAYERS[name] for name in LPIPS_LAYERS],
        weights=weights,
        replace_pooling=False,
        distance="mse",
        reduction="none",
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        normalize_features=True,
    )
    return model.eval()


def _load_vgg16_features(features: torch.nn.Module, path: Path) -> None:
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise InputError("vgg16", f"{path} is not a state dict")
    # A whole vgg16 state dict ("features.N.*", "classifier.*") or its features alone ("N.*").
    if any(k.startswith("features.") for k in state):
        state = {k.removeprefix("features."): v for k, v in state.items() if k.startswith("features.")}
    try:
        features.load_state_dict(state, assign=True)
    except RuntimeError as exc:
        raise InputError("vgg16", f"{path} is not a torchvision vgg16 state dict: {exc}") from exc


def load_lpips_linear(path: Path) -> list[torch.Tensor]:
    """The 5 linear layers' weights, (1, C, 1, 1) each: piq's lpips_weights.pt (a list of them) or
    the lpips package's vgg.pth (``lin{i}.model.1.weight``; the learned layers piq's are ported from)."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict):
        keys = [f"lin{i}.model.1.weight" for i in range(len(LPIPS_CHANNELS))]
        if not all(k in state for k in keys):
            raise InputError("lpips_linear", f"{path}: a dict without {keys[0]}..{keys[-1]}")
        state = [state[k] for k in keys]
    if not isinstance(state, (list, tuple)) or len(state) != len(LPIPS_CHANNELS):
        raise InputError("lpips_linear", f"{path}: expected {len(LPIPS_CHANNELS)} tensors, as piq's lpips_weights.pt")
    out = []
    for w, channels in zip(state, LPIPS_CHANNELS, strict=True):
        if not isinstance(w, torch.Tensor) or w.numel() != channels:
            got = tuple(w.shape) if isinstance(w, torch.Tensor) else type(w).__name__
            raise InputError("lpips_linear", f"{path}: expected weights of sizes {LPIPS_CHANNELS}, got {got}")
        out.append(w.reshape(1, channels, 1, 1).float())
    return out


def write_sample_metrics(folder: Path, result: dict[str, Any]) -> Path:
    """``folder/metrics.json``: one clip's result (the authors' ``{idx}_metrics.json``)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "metrics.json"
    path.write_text(json.dumps(json_safe(result), indent=2) + "\n")
    return path


def summarize(results: list[dict[str, Any]]) -> dict[str, Any]:
    """The mean over clips, as the authors' ``all_summary.json``, kept as floats (they write each
    as a string with 3 decimals). LPIPS is averaged only when every clip has one."""
    if not results:
        raise InputError("results", "no clips to summarize")
    count = len(results)
    with_lpips = [r["lpips"] for r in results if r.get("lpips") is not None]
    if with_lpips and len(with_lpips) != count:
        raise InputError("results", f"LPIPS of {len(with_lpips)} of {count} clips: a mean of some would mislead")
    random_backbone = any(r.get("random_backbone", False) for r in results)
    return {
        "psnr": sum(float(r["psnr"]) for r in results) / count,
        "ssim": sum(float(r["ssim"]) for r in results) / count,
        "lpips": sum(with_lpips) / count if with_lpips else None,
        "count": count,
        "random_backbone": random_backbone,
        "notes": ["LPIPS with RANDOM weights in some clips: says nothing of quality"] if random_backbone else [],
    }


def write_summary(folder: Path, summary: dict[str, Any]) -> Path:
    """``folder/all_summary.json``: ``summarize``'s result."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "all_summary.json"
    path.write_text(json.dumps(json_safe(summary), indent=2) + "\n")
    return path
