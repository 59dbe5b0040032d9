"""An attention backend that takes no mask, on LTX (whose cross-attention carries the text
mask): the masked calls run on native SDPA, the others on the backend, and the result stays
within a tolerance of native."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest
import torch

from arc_fabric_core.engine.facade import Engine
from arc_fabric_core.store.files import SessionStore

# fp32 on the CPU: SDPA's flash kernel sums in another order (measured ~1e-6).
TOLERANCE = dict(atol=1e-4, rtol=1e-4)


def test_masked_calls_keep_native_and_the_rest_take_the_backend(
    tmp_path: Path, small: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    from diffusers.models.attention_dispatch import AttentionBackendName, _AttentionBackendRegistry

    flash = AttentionBackendName("_native_flash")
    original = _AttentionBackendRegistry._backends[flash]
    masks: list[bool] = []

    def counted(**kwargs):
        masks.append(kwargs.get("attn_mask") is not None)
        return original(**kwargs)

    counted.__signature__ = inspect.signature(original)  # type: ignore[attr-defined]
    monkeypatch.setitem(_AttentionBackendRegistry._backends, flash, counted)
    engine = Engine(SessionStore(tmp_path), device="cpu")
    native = engine.create("ltx", small, variant="tiny")
    engine.run(native)
    fast = engine.create("ltx", {**small, "attention": "_native_flash"}, variant="tiny")
    engine.run(fast)  # native flash refuses masks: without the routing this raises
    assert masks and not any(masks)  # it ran, and never with a mask
    got, expected = engine.final_latents(fast), engine.final_latents(native)
    assert torch.allclose(got, expected, **TOLERANCE), (got - expected).abs().max()
