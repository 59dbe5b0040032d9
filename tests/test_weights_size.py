"""Sizing a checkpoint from its safetensors headers, before loading it."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from arc_fabric_core.contract.errors import WeightsError
from arc_fabric_core.runtime.weights_size import folder_bytes, tensor_bytes


def test_header_sizes_equal_the_tensors(tmp_path: Path) -> None:
    tensors = {
        "w": torch.zeros(3, 5, dtype=torch.float32),
        "b": torch.zeros(7, dtype=torch.bfloat16),
        "ids": torch.zeros(2, 2, dtype=torch.int64),
        "mask": torch.zeros(4, dtype=torch.bool),
    }
    save_file(tensors, tmp_path / "model.safetensors", metadata={"format": "pt"})
    expected = sum(t.numel() * t.element_size() for t in tensors.values())
    assert tensor_bytes(tmp_path / "model.safetensors") == expected == 60 + 14 + 32 + 4
    # Loaded in bf16, floating-point tensors take 2 bytes each; the others keep their width.
    assert tensor_bytes(tmp_path / "model.safetensors", as_dtype_bytes=2) == 30 + 14 + 32 + 4


def test_folder_sizes_by_component_across_shards(tmp_path: Path) -> None:
    (tmp_path / "transformer").mkdir()
    (tmp_path / "vae").mkdir()
    save_file({"a": torch.zeros(10)}, tmp_path / "transformer" / "diffusion_pytorch_model-00001-of-00002.safetensors")
    save_file({"b": torch.zeros(6)}, tmp_path / "transformer" / "diffusion_pytorch_model-00002-of-00002.safetensors")
    save_file({"c": torch.zeros(2, dtype=torch.float16)}, tmp_path / "vae" / "diffusion_pytorch_model.safetensors")
    assert folder_bytes(tmp_path) == {"transformer": 64, "vae": 4}


def test_a_broken_file_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "x.safetensors").write_bytes(b"\xff" * 16)
    with pytest.raises(WeightsError, match=r"x\.safetensors is not a readable safetensors file"):
        tensor_bytes(tmp_path / "x.safetensors")
    with pytest.raises(WeightsError, match="does not exist"):
        folder_bytes(tmp_path / "nope")
