"""Quality metrics on tiny backbones built offline: identical videos give SSIM 1, LPIPS 0
and infinite PSNR; the metrics are deterministic; a backbone without weights is refused
unless random weights are asked for, and then every result says so."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from arc_fabric_core.contract.errors import InputError
from arc_fabric_core.contract.hookspecs import hookimpl
from arc_fabric_core.dispatch.plugins import Plugins
from arc_fabric_core.metrics import Metric, MetricResult, available, compute

pytest.importorskip("open_clip")
pytest.importorskip("lpips")

TINY_CLIP = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 8},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}


def video(seed: int, frames: int = 5) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    base = torch.rand(1, 48, 64, 3, generator=g)
    drift = torch.linspace(0, 0.2, frames).view(-1, 1, 1, 1)
    return (base + drift + 0.05 * torch.rand(frames, 48, 64, 3, generator=g)).clamp(0, 1)


@pytest.fixture(scope="module")
def clip_weights(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A tiny open_clip model (its config registered) and a checkpoint of it on disk."""
    import open_clip

    folder = tmp_path_factory.mktemp("clip")
    (folder / "Tiny-CLIP.json").write_text(json.dumps(TINY_CLIP))
    open_clip.add_model_config(folder / "Tiny-CLIP.json")
    torch.manual_seed(0)
    model = open_clip.create_model("Tiny-CLIP")
    path = folder / "tiny-clip.pt"
    torch.save(model.state_dict(), path)
    return str(path)


@pytest.fixture(scope="module")
def alexnet_features(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A torchvision AlexNet's feature weights (random), in torchvision's key names."""
    import torchvision

    torch.manual_seed(1)
    state = {k: v for k, v in torchvision.models.alexnet().state_dict().items() if k.startswith("features.")}
    path = tmp_path_factory.mktemp("lpips") / "alexnet-features.pth"
    torch.save(state, path)
    return str(path)


def test_identical_videos_are_perfect_and_different_ones_are_not(alexnet_features: str) -> None:
    a, b = video(0), video(1)
    options = {"lpips_backbone": alexnet_features}
    same = compute(["psnr", "ssim", "lpips"], a, reference=a.clone(), options=options)
    assert same["psnr"].value == math.inf and same["psnr"].per_frame == [math.inf] * 5
    assert same["ssim"].value == pytest.approx(1.0, abs=1e-12)
    assert same["lpips"].value == pytest.approx(0.0, abs=1e-6) and not same["lpips"].random_backbone
    other = compute(["psnr", "ssim", "lpips"], a, reference=b, options=options)
    assert 0 < other["psnr"].value < 40 and other["ssim"].value < 0.9 and other["lpips"].value > 0
    again = compute(["psnr", "ssim", "lpips"], a, reference=b, options=options)
    assert {k: v.as_dict() for k, v in again.items()} == {k: v.as_dict() for k, v in other.items()}


def test_temporal_consistency_falls_when_frames_jump() -> None:
    smooth = video(0, frames=6)
    jumpy = smooth.clone()
    jumpy[3] = video(7, frames=1)[0]
    steady, broken = compute(["temporal"], smooth)["temporal"], compute(["temporal"], jumpy)["temporal"]
    assert len(steady.per_frame) == 5 and steady.value > broken.value
    assert min(broken.per_frame) == broken.per_frame[2] or min(broken.per_frame) == broken.per_frame[3]


def test_clip_scores_each_frame_with_local_weights(clip_weights: str) -> None:
    options = {"clip_model": "Tiny-CLIP", "clip_weights": clip_weights}
    first = compute(["clip"], video(0), prompt="a red fox", options=options)["clip"]
    assert len(first.per_frame) == 5 and -1 <= first.value <= 1 and not first.random_backbone and not first.notes
    assert compute(["clip"], video(0), prompt="a red fox", options=options)["clip"] == first
    assert compute(["clip"], video(0), prompt="a blue boat", options=options)["clip"].value != first.value


def test_a_backbone_without_weights_is_refused_unless_random_is_asked_for(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ARC_CLIP_WEIGHTS", raising=False)
    monkeypatch.delenv("ARC_LPIPS_BACKBONE", raising=False)
    with pytest.raises(InputError) as err:
        compute(["clip"], video(0), prompt="a fox", options={"clip_model": "Tiny-CLIP"})
    assert err.value.field == "clip_weights" and "ARC_CLIP_WEIGHTS" in err.value.message
    with pytest.raises(InputError) as err:
        compute(["lpips"], video(0), reference=video(1))
    assert err.value.field == "lpips_backbone"
    flagged = compute(
        ["clip", "lpips"], video(0), prompt="a fox", reference=video(1), allow_random=True,
        options={"clip_model": "Tiny-CLIP"},
    )  # fmt: skip
    assert all(r.random_backbone and "RANDOM" in r.notes[0] for r in flagged.values())


def test_bad_requests_name_what_is_wrong_before_anything_runs() -> None:
    with pytest.raises(InputError, match="unknown metric 'fid'; available: clip, lpips, psnr, ssim, temporal"):
        compute(["fid"], video(0))
    with pytest.raises(InputError, match="give one") as err:
        compute(["clip"], video(0))
    assert err.value.field == "metrics"
    with pytest.raises(InputError) as err:
        compute(["psnr"], video(0), reference=video(1, frames=3))
    assert err.value.field == "reference"
    with pytest.raises(InputError) as err:
        compute(["temporal"], torch.zeros(4, 8, 8))
    assert err.value.field == "frames"


def test_a_plugin_registers_a_metric() -> None:
    def brightness(frames: torch.Tensor, **_: object) -> MetricResult:
        return MetricResult("brightness", float(frames.mean()))

    class Bright:
        @hookimpl
        def arc_register_metrics(self, register) -> None:
            register(Metric("brightness", brightness, "mean pixel value"))

    plugins = Plugins(load_entrypoints=False)
    plugins.register(Bright(), name="bright")
    assert "brightness" in available(plugins)
    result = compute(["brightness", "temporal"], torch.full((2, 8, 8, 3), 0.25), plugins=plugins)
    assert result["brightness"].value == 0.25 and result["temporal"].value == pytest.approx(1.0)


def test_metrics_are_listed_with_their_plugin(tmp_path: Path) -> None:
    from arc_fabric_core.testing.cli import run_cli

    res = run_cli("metrics", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    names = [m["name"] for m in json.loads(res.stdout)]
    # The built-in ones, and those of the shipped DreamDojo plugin (piq's, as its authors score).
    assert names == ["clip", "lpips", "piq_lpips", "piq_psnr", "piq_ssim", "psnr", "ssim", "temporal"]

    class Bright:
        @hookimpl
        def arc_register_metrics(self, register) -> None:
            register(Metric("brightness", lambda frames, **_: MetricResult("brightness", 0.0)))

    plugins = Plugins(load_entrypoints=False)
    plugins.register(Bright(), name="bright")
    (listed,) = [p for p in plugins.describe() if p["name"] == "bright"]
    assert listed["metrics"] == ["brightness"]
