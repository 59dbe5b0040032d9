"""DreamDojo's rollout metrics: piq's numbers, local LPIPS weights, and never the network."""

from __future__ import annotations

import json
import math
import socket
from pathlib import Path
from types import SimpleNamespace

import piq
import piq.perceptual
import pytest
import torch
import torch.nn.functional as F
import torchvision.models._api
from arc_dreamdojo import metrics
from torchvision.models.vgg import cfgs, make_layers

from arc_fabric_core.metrics import fidelity


def _refuse(*_: object, **__: object) -> None:
    raise AssertionError("the network was tried")


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test runs offline: sockets and every download helper piq/torchvision would use fail."""
    monkeypatch.setattr(socket.socket, "connect", _refuse)
    monkeypatch.setattr(socket, "create_connection", _refuse)
    monkeypatch.setattr(torch.hub, "download_url_to_file", _refuse)
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", _refuse)
    monkeypatch.setattr(torchvision.models._api, "load_state_dict_from_url", _refuse)
    monkeypatch.delenv(metrics.ENV_VGG16, raising=False)
    monkeypatch.delenv(metrics.ENV_LPIPS_LINEAR, raising=False)


def _clips(
    frames: int, height: int, width: int, seed: int = 0, noise: tuple[float, float] = (0.02, 0.15)
) -> tuple[torch.Tensor, torch.Tensor]:
    """(pred, truth) (F, H, W, 3): a smooth scene, and it with noise growing frame by frame (so the
    frames' scores differ, which is where a mean of PSNRs and a PSNR of the mean MSE part)."""
    g = torch.Generator().manual_seed(seed)
    scene = torch.rand(frames, 3, max(2, height // 8), max(2, width // 8), generator=g)
    truth = F.interpolate(scene, size=(height, width), mode="bilinear", align_corners=False)
    sigma = torch.linspace(*noise, frames).view(frames, 1, 1, 1)
    pred = (truth + torch.randn(truth.shape, generator=g) * sigma).clamp(0, 1)
    return pred.permute(0, 2, 3, 1).contiguous(), truth.permute(0, 2, 3, 1).contiguous()


def _authors(pred: torch.Tensor, truth: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The authors' x_batch, y_batch: (F, 3, H, W) in [0, 1]."""
    return pred.clamp(0, 1).permute(0, 3, 1, 2), truth.clamp(0, 1).permute(0, 3, 1, 2)


def test_psnr_ssim_are_piqs_at_480x640() -> None:
    pred, truth = _clips(3, 480, 640)
    result = metrics.rollout_metrics(pred, truth, lpips=False)
    x, y = _authors(pred, truth)
    assert result["psnr"] == piq.psnr(x, y).mean().item()
    assert result["ssim"] == piq.ssim(x, y).mean().item()
    assert result["per_frame"]["psnr"] == piq.psnr(x, y, reduction="none").tolist()
    assert result["per_frame"]["ssim"] == piq.ssim(x, y, reduction="none").tolist()
    assert (result["frames"], result["height"], result["width"]) == (3, 480, 640)
    assert result["lpips"] is None and result["per_frame"]["lpips"] == []
    assert result["random_backbone"] is False and result["notes"] == ["LPIPS not computed"]


def test_core_fidelity_against_piq() -> None:
    """Core's PSNR is of the mean MSE (piq: the mean of per-frame PSNRs); core's SSIM is piq's
    without its average pooling (piq pools by 2 from min(H, W) >= 384, so at 480x640)."""
    pred, truth = _clips(3, 64, 80)
    x, y = _authors(pred, truth)
    core_psnr, piq_psnr = fidelity.psnr(pred, truth), piq.psnr(x, y, reduction="none")
    # Per frame they agree (piq adds 1e-8 to the MSE, and runs in float32)...
    assert core_psnr.per_frame == pytest.approx(piq_psnr.tolist(), abs=1e-3)
    # ...but core's value is the PSNR of the mean MSE: below the mean PSNR when frames differ.
    mse = ((x.double() - y.double()) ** 2).mean(dim=(1, 2, 3))
    assert core_psnr.value == pytest.approx(10 * math.log10(1 / float(mse.mean())))
    assert piq_psnr.mean().item() - core_psnr.value > 1.0
    core_ssim = fidelity.ssim(pred, truth)
    assert core_ssim.per_frame == pytest.approx(piq.ssim(x, y, reduction="none", downsample=False).tolist(), abs=1e-5)
    # Below 384 piq does not pool: the same SSIM. At 480x640 it pools by 2, and SSIM rises.
    assert core_ssim.value == pytest.approx(piq.ssim(x, y).item(), abs=1e-5)
    big_x, big_y = _authors(*_clips(1, 480, 640, noise=(0.1, 0.1)))
    assert piq.ssim(big_x, big_y).item() - piq.ssim(big_x, big_y, downsample=False).item() > 0.05


def _weight_files(folder: Path) -> tuple[Path, Path, torch.nn.Sequential, list[torch.Tensor]]:
    """A vgg16 state dict and piq-format linear layers, from seeded random modules."""
    torch.manual_seed(1)
    features = make_layers(cfgs["D"])
    linear = [torch.rand(1, c, 1, 1) for c in metrics.LPIPS_CHANNELS]
    state = {f"features.{k}": v for k, v in features.state_dict().items()}
    state["classifier.0.weight"] = torch.zeros(2, 2)  # a whole vgg16 has it: it is ignored
    vgg_path, linear_path = folder / metrics.VGG16_FILE, folder / "lpips_weights.pt"
    torch.save(state, vgg_path)
    torch.save(linear, linear_path)
    return vgg_path, linear_path, features, linear


def _piq_lpips(features: torch.nn.Sequential, linear: list[torch.Tensor], monkeypatch: pytest.MonkeyPatch) -> piq.LPIPS:
    """piq.LPIPS() itself, its two downloads answered by hand with these weights."""
    with monkeypatch.context() as m:
        m.setattr(piq.perceptual, "vgg16", lambda pretrained, progress: SimpleNamespace(features=features))

        def weights(url: str, progress: bool) -> list[torch.Tensor]:
            assert url == metrics.LPIPS_LINEAR_URL
            return linear

        m.setattr(torch.hub, "load_state_dict_from_url", weights)
        return piq.LPIPS(reduction="none")


def test_lpips_with_local_weights_is_piqs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    vgg_path, linear_path, features, linear = _weight_files(tmp_path)
    pred, truth = _clips(2, 32, 32)
    result = metrics.rollout_metrics(pred, truth, vgg16=vgg_path, lpips_linear=linear_path)
    expected = _piq_lpips(features, linear, monkeypatch)(*_authors(pred, truth))
    assert result["per_frame"]["lpips"] == pytest.approx(expected.tolist(), rel=1e-5)
    assert result["lpips"] == pytest.approx(expected.mean().item(), rel=1e-5)
    assert result["random_backbone"] is False and result["notes"] == []

    # The same weights from $ARC_DREAMDOJO_*, as features alone and as the lpips package's vgg.pth.
    torch.save(features.state_dict(), tmp_path / "features.pth")
    torch.save({f"lin{i}.model.1.weight": w for i, w in enumerate(linear)}, tmp_path / "vgg.pth")
    monkeypatch.setenv(metrics.ENV_VGG16, str(tmp_path / "features.pth"))
    monkeypatch.setenv(metrics.ENV_LPIPS_LINEAR, str(tmp_path / "vgg.pth"))
    from_env = metrics.rollout_metrics(pred, truth)
    assert from_env["per_frame"]["lpips"] == pytest.approx(result["per_frame"]["lpips"], rel=1e-6)


def test_random_backbone_says_so() -> None:
    pred, truth = _clips(1, 32, 32)
    rng = torch.get_rng_state()
    result = metrics.rollout_metrics(pred, truth, allow_random=True)
    assert torch.equal(torch.get_rng_state(), rng)  # the caller's RNG is untouched
    assert result["random_backbone"] is True and result["lpips"] is not None
    assert any("RANDOM VGG16 and LPIPS linear layers" in note for note in result["notes"])
    metrics.lpips_model.cache_clear()  # a rebuilt random network is the same one (seeded)
    assert metrics.rollout_metrics(pred, truth, allow_random=True)["lpips"] == result["lpips"]


def test_missing_weights_are_refused(tmp_path: Path) -> None:
    pred, truth = _clips(1, 32, 32)
    with pytest.raises(ValueError, match=metrics.ENV_VGG16):
        metrics.rollout_metrics(pred, truth)
    with pytest.raises(ValueError, match="is not a file"):
        metrics.rollout_metrics(pred, truth, vgg16=tmp_path / "absent.pth", allow_random=True)
    torch.save({"features.0.weight": torch.ones(64, 3, 3, 3)}, tmp_path / "partial.pth")
    with pytest.raises(ValueError, match="not a torchvision vgg16 state dict"):
        metrics.rollout_metrics(pred, truth, vgg16=tmp_path / "partial.pth", allow_random=True)
    torch.save([torch.ones(1, 3, 1, 1)], tmp_path / "bad.pt")
    with pytest.raises(ValueError, match="expected 5 tensors"):
        metrics.rollout_metrics(pred, truth, lpips_linear=tmp_path / "bad.pt", allow_random=True)


def test_shapes_must_match() -> None:
    with pytest.raises(ValueError, match=r"\(2, 32, 32, 3\).*\(2, 32, 48, 3\)"):
        metrics.rollout_metrics(torch.zeros(2, 32, 32, 3), torch.zeros(2, 32, 48, 3), lpips=False)


def test_summarize_and_files(tmp_path: Path) -> None:
    a = {"psnr": 20.0, "ssim": 0.5, "lpips": 0.25, "random_backbone": False}
    b = {"psnr": 30.0, "ssim": 0.75, "lpips": 0.75, "random_backbone": True}
    summary = metrics.summarize([a, b])
    assert summary == {
        "psnr": 25.0,
        "ssim": 0.625,
        "lpips": 0.5,
        "count": 2,
        "random_backbone": True,
        "notes": ["LPIPS with RANDOM weights in some clips: says nothing of quality"],
    }
    assert metrics.summarize([{**a, "lpips": None}])["lpips"] is None
    with pytest.raises(ValueError, match="LPIPS of 1 of 2 clips"):
        metrics.summarize([a, {**b, "lpips": None}])
    with pytest.raises(ValueError):
        metrics.summarize([])

    result = metrics.rollout_metrics(*_clips(1, 32, 32), lpips=False)
    path = metrics.write_sample_metrics(tmp_path / "clip0", result)
    assert path == tmp_path / "clip0" / "metrics.json" and json.loads(path.read_text()) == result
    assert json.loads(metrics.write_summary(tmp_path, summary).read_text()) == summary
