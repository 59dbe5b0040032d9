"""Checks on what a plugin's stage hooks return, at the boundary between plugin and engine.

A wrong result (a tensor in another layout, a list instead of a dict) would otherwise
surface steps later as a traceback deep in the scheduler, the store or imageio. Each
check fails with one line naming the plugin, the hook, what was expected and what came.
"""

from __future__ import annotations

from typing import Any

import torch

from arc_fabric_core.contract.errors import ArcFabricError


class PluginResultError(ArcFabricError):
    """A stage hook returned something outside its contract (see hookspecs.py)."""

    def __init__(self, plugin: str, hook: str, expected: str, got: str) -> None:
        self.plugin, self.hook = plugin, hook
        super().__init__(f"plugin {plugin!r}: {hook} returned {got}; expected {expected}")


def describe(value: Any) -> str:
    """What a value is, briefly: a tensor's shape and dtype, else its type."""
    if isinstance(value, torch.Tensor):
        shape = "(" + ", ".join(str(d) for d in value.shape) + ")"
        return f"a {str(value.dtype).removeprefix('torch.')} tensor of shape {shape}"
    return f"a {type(value).__name__}"


def _shape(dims: tuple[int | str, ...]) -> str:
    return "(" + ", ".join(str(d) for d in dims) + ")"


def check_conditioning(plugin: str, value: Any) -> dict[str, torch.Tensor]:
    """``arc_encode``: a dict of tensors (it is stored with the session)."""
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise PluginResultError(plugin, "arc_encode", "a dict of tensors keyed by name", describe(value))
    bad = next((k for k, v in value.items() if not isinstance(v, torch.Tensor)), None)
    if bad is not None:
        raise PluginResultError(plugin, "arc_encode", "a dict of tensors", f"{describe(value[bad])} under {bad!r}")
    return value


def check_latents(plugin: str, hook: str, value: Any) -> torch.Tensor:
    """``arc_prepare_latents`` / ``arc_next_pass``: floating ``(1, C, F, H, W)`` latents."""
    if not isinstance(value, torch.Tensor) or not value.is_floating_point() or value.ndim != 5 or value.shape[0] != 1:
        raise PluginResultError(plugin, hook, "floating latents of shape (1, C, F, H, W)", describe(value))
    return value


def check_model_output(plugin: str, value: Any, latents: torch.Tensor | None) -> torch.Tensor:
    """``arc_denoise_step``: a tensor, shaped like ``latents`` when given (what the core
    schedule's ``step()`` consumes; a plugin's own ``Schedule`` subclass may differ)."""
    if latents is None:
        if not isinstance(value, torch.Tensor):
            raise PluginResultError(plugin, "arc_denoise_step", "a tensor (the model output)", describe(value))
        return value
    if not isinstance(value, torch.Tensor) or tuple(value.shape) != tuple(latents.shape):
        expected = f"a tensor shaped like the latents {_shape(tuple(latents.shape))}"
        raise PluginResultError(plugin, "arc_denoise_step", expected, describe(value))
    return value


def check_frames(plugin: str, value: Any, size: tuple[int, int, int] | None = None) -> torch.Tensor:
    """``arc_decode``: ``(F, H, W, 3)`` floating frames in [0, 1]; ``size`` is (F, H, W)
    when the engine knows it (the final latents decode to the requested video)."""
    dims: tuple[int | str, ...] = (*size, 3) if size is not None else ("F", "H", "W", 3)
    expected = f"frames of shape {_shape(dims)} (F, H, W, RGB), floating, in [0, 1]"
    if not isinstance(value, torch.Tensor) or not value.is_floating_point() or value.ndim != 4 or value.shape[-1] != 3:
        raise PluginResultError(plugin, "arc_decode", expected, describe(value))
    if size is not None and tuple(value.shape[:3]) != size:
        raise PluginResultError(plugin, "arc_decode", expected, describe(value))
    if value.numel():
        low, high = float(value.min()), float(value.max())
        if low < 0 or high > 1 or low != low or high != high:  # low != low: NaN
            raise PluginResultError(
                plugin, "arc_decode", expected, f"{describe(value)} with values in [{low:.3g}, {high:.3g}]"
            )
    return value
