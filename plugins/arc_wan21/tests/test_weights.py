"""Real variants load from a local diffusers-layout folder through the same code as tiny."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from arc_fabric_core.contract.errors import WeightsError
from arc_fabric_core.engine.facade import Engine
from arc_fabric_core.store.files import SessionStore


def test_real_variant_loads_a_checkpoint_in_the_published_layout(
    tmp_path: Path, tiny_folder: Path, small: dict
) -> None:
    # The tiny checkpoint is saved in the Wan2.1-T2V-*-Diffusers layout, so the 1.3b
    # variant pointed at it must load and give exactly what the tiny variant gives.
    engine = Engine(SessionStore(tmp_path), device="cpu")
    real = engine.create("wan21", small, variant="1.3b", weights=str(tiny_folder))
    assert real.ref.weights == tiny_folder.resolve()
    engine.run(real)
    tiny = engine.create("wan21", small, variant="tiny")
    engine.run(tiny)
    assert torch.equal(engine.final_latents(real), engine.final_latents(tiny))


def test_weights_from_environment(monkeypatch: pytest.MonkeyPatch, tiny_folder: Path, tmp_path: Path) -> None:
    monkeypatch.setenv("ARC_WAN21_1_3B_WEIGHTS", str(tiny_folder))
    ref = Engine(SessionStore(tmp_path), device="cpu").resolve("wan21", "auto")
    assert ref.variant.name == "1.3b" and ref.weights == tiny_folder.resolve()


def test_auto_without_weights_is_tiny(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("ARC_WAN21_1_3B_WEIGHTS", raising=False)
    monkeypatch.delenv("ARC_WAN21_14B_WEIGHTS", raising=False)
    assert Engine(SessionStore(tmp_path), device="cpu").resolve("wan21", "auto").variant.tiny


@pytest.mark.parametrize("missing", ["vae", "transformer", "model_index.json"])
def test_incomplete_checkpoint_is_refused_before_loading(
    tmp_path: Path, tiny_folder: Path, missing: str, small: dict
) -> None:
    broken = tmp_path / "Wan2.1-T2V-1.3B-Diffusers"
    shutil.copytree(tiny_folder, broken)
    target = broken / missing
    shutil.rmtree(target) if target.is_dir() else target.unlink()
    engine = Engine(SessionStore(tmp_path / "store"), device="cpu")
    with pytest.raises(WeightsError) as info:
        engine.create("wan21", small, variant="1.3b", weights=str(broken))
    assert info.value.field == "model.weights"
    assert missing in str(info.value) and "model.variant=tiny" in str(info.value)
    assert engine.cache.loads == 0


def test_missing_weights_names_the_tiny_variant(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, small: dict) -> None:
    monkeypatch.delenv("ARC_WAN21_14B_WEIGHTS", raising=False)
    with pytest.raises(WeightsError, match=r"ARC_WAN21_14B_WEIGHTS.*model\.variant=tiny"):
        Engine(SessionStore(tmp_path), device="cpu").create("wan21", small, variant="14b")


def test_tiny_checkpoint_is_built_once_and_reused(tiny_folder: Path) -> None:
    from arc_wan21.tiny import ensure_tiny_checkpoint

    stamp = (tiny_folder / "model_index.json").stat().st_mtime_ns
    assert ensure_tiny_checkpoint() == tiny_folder
    assert (tiny_folder / "model_index.json").stat().st_mtime_ns == stamp
    for component in ("scheduler", "text_encoder", "tokenizer", "transformer", "vae"):
        assert (tiny_folder / component).is_dir()


def test_checkpoint_size_is_known_before_loading(tiny_folder: Path, tmp_path: Path) -> None:
    from arc_fabric_core.engine.facade import Engine
    from arc_fabric_core.runtime.weights_size import folder_bytes
    from arc_fabric_core.store.files import SessionStore

    sizes = folder_bytes(tiny_folder)
    assert set(sizes) == {"transformer", "vae", "text_encoder"}
    engine = Engine(SessionStore(tmp_path), device="cpu")
    pipe = engine.cache.get(engine.resolve("wan21", "tiny"), engine.device, "auto").pipe
    for component in sizes:
        module = getattr(pipe, component)
        # What the checkpoint stores (non-persistent buffers such as RoPE tables come on top).
        stored = {t.data_ptr(): t.numel() * t.element_size() for t in module.state_dict().values()}
        assert sizes[component] == sum(stored.values()), component
