"""Capture and restore a scheduler's mutable internals, so that a resume is exact.

A fresh FlowMatch Euler scheduler resumes exactly from its index alone, but UniPC
keeps a history of model outputs: resuming without it drifts (about 2e-2). So the
whole instance state is captured: tensors go to safetensors, the rest to JSON.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

# Attributes that are configuration, not state (rebuilt by arc_schedule).
_SKIP = {"config", "_internal_dict"}


def _copy(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.detach().to("cpu", copy=True).contiguous()


def capture(
    scheduler: Any, copy: Callable[[torch.Tensor], torch.Tensor] = _copy
) -> tuple[dict[str, torch.Tensor], str]:
    """Return (tensors, json) describing every attribute of ``scheduler``'s instance
    state; ``copy`` makes the host copy of each tensor (a checkpoint's does not wait)."""
    tensors: dict[str, torch.Tensor] = {}
    plain: dict[str, Any] = {}
    for name, value in vars(scheduler).items():
        if name in _SKIP or callable(value):
            continue
        plain[name] = _encode(value, f"scheduler.{name}", tensors, copy)
    return tensors, json.dumps(plain, sort_keys=True)


def restore(scheduler: Any, tensors: dict[str, torch.Tensor], state_json: str, device: torch.device) -> None:
    """Put a state captured by :func:`capture` back onto a freshly built scheduler."""
    for name, encoded in json.loads(state_json).items():
        setattr(scheduler, name, _decode(encoded, tensors, device))


def _encode(
    value: Any, key: str, tensors: dict[str, torch.Tensor], copy: Callable[[torch.Tensor], torch.Tensor]
) -> Any:
    if isinstance(value, torch.Tensor):
        # A copy, so that the writer thread never sees a tensor the loop goes on to change.
        tensors[key] = copy(value)
        return {"__tensor__": key, "device": value.device.type}
    if isinstance(value, np.ndarray):
        tensors[key] = torch.from_numpy(np.ascontiguousarray(value))
        return {"__ndarray__": key}
    if isinstance(value, (list, tuple)):
        items = [_encode(v, f"{key}.{i}", tensors, copy) for i, v in enumerate(value)]
        return {"__tuple__": items} if isinstance(value, tuple) else items
    if isinstance(value, dict):
        return {"__dict__": {k: _encode(v, f"{key}.{k}", tensors, copy) for k, v in value.items()}}
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"cannot checkpoint scheduler attribute {key} of type {type(value).__name__}")


def _decode(value: Any, tensors: dict[str, torch.Tensor], device: torch.device) -> Any:
    if isinstance(value, list):
        return [_decode(v, tensors, device) for v in value]
    if isinstance(value, dict):
        if "__tensor__" in value:
            tensor = tensors[value["__tensor__"]]
            return tensor.to(device) if value.get("device", "cpu") != "cpu" else tensor.clone()
        if "__ndarray__" in value:
            return tensors[value["__ndarray__"]].numpy().copy()
        if "__tuple__" in value:
            return tuple(_decode(v, tensors, device) for v in value["__tuple__"])
        if "__dict__" in value:
            return {k: _decode(v, tensors, device) for k, v in value["__dict__"].items()}
    return value
