"""Warm models, kept across the sessions of one process (Hydra multirun jobs reuse them).

This is the one place that decides when a model loads and when it is released; the
runtime's memory-aware cache takes over this role.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import torch

from arc_fabric_core.errors import InputError
from arc_fabric_core.models import ModelRef
from arc_fabric_core.plugins import Plugins

log = logging.getLogger(__name__)


def resolve_device(device: str | torch.device) -> torch.device:
    """``auto`` = CUDA when available, else CPU; anything else is checked, never guessed."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError):
        raise InputError("device", f"unknown device {device!r}; allowed: auto, cpu, cuda, cuda:N") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise InputError("device", "CUDA is not available here; use device=cpu or device=auto")
    return resolved


def check_dtype(dtype: str) -> str:
    if dtype != "auto" and not isinstance(getattr(torch, dtype, None), torch.dtype):
        raise InputError("dtype", f"unknown dtype {dtype!r}; allowed: auto, float32, bfloat16, float16")
    return dtype


class ModelPool:
    def __init__(self, plugins: Plugins) -> None:
        self.plugins = plugins
        self._warm: dict[tuple[Any, ...], Any] = {}
        self.loads = 0  # how many times a model was actually loaded (tests and benchmarks read it)

    def get(self, ref: ModelRef, device: torch.device, dtype: str) -> Any:
        key = (*ref.key, str(device), dtype)
        if key not in self._warm:
            start = time.perf_counter()
            caller = self.plugins.stage("arc_load", ref.spec.name)
            components = caller(model=ref, device=device, dtype=dtype)
            if components is None:
                raise RuntimeError(f"arc_load returned nothing for {ref.spec.name}")
            self._warm[key] = components
            self.loads += 1
            log.debug(
                "loaded %s/%s on %s in %.2fs", ref.spec.name, ref.variant.name, device, time.perf_counter() - start
            )
        return self._warm[key]

    def adopt(self, ref: ModelRef, device: torch.device, dtype: str, components: Any) -> None:
        """Hold ``components`` built elsewhere as the warm copy of ``ref`` (benchmarks, notebooks)."""
        self._warm[(*ref.key, str(device), dtype)] = components

    def is_warm(self, ref: ModelRef, device: torch.device, dtype: str) -> bool:
        return (*ref.key, str(device), dtype) in self._warm
