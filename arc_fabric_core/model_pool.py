"""Warm models, kept across the sessions of one process (Hydra multirun jobs reuse them).

This is the one place that decides when a model loads and when it is released; the
runtime's memory-aware cache takes over this role.
"""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Iterable
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


def components_bytes(components: Any) -> int:
    """Bytes of the parameters and buffers of every torch module inside ``components``
    (a dataclass, a diffusers pipeline, a dict or a module; each tensor counted once)."""
    seen: set[int] = set()
    total = 0
    stack, visited = [components], set()
    while stack:
        obj = stack.pop()
        if id(obj) in visited or obj is None:
            continue
        visited.add(id(obj))
        if isinstance(obj, torch.nn.Module):
            for tensor in (*obj.parameters(), *obj.buffers()):
                if id(tensor) not in seen:
                    seen.add(id(tensor))
                    total += tensor.numel() * tensor.element_size()
        elif isinstance(obj, dict):
            stack.extend(obj.values())
        elif isinstance(obj, (list, tuple)):
            stack.extend(obj)
        elif hasattr(obj, "components") and isinstance(getattr(obj, "components", None), dict):
            stack.extend(obj.components.values())  # a diffusers pipeline
        elif hasattr(obj, "__dataclass_fields__"):
            stack.extend(getattr(obj, name) for name in obj.__dataclass_fields__)
    return total


class ModelPool:
    """Warm models, with one memory policy for everything that loads them.

    ``budget_bytes`` caps what the warm models may take together (None: no cap). Before
    a model loads, its size is estimated (the weights folder's safetensors headers, or
    what it took when it last loaded); when it would not fit, the least recently used
    models that no one holds are released first. Hybrid schedules rely on this: both
    stage models stay warm when they fit, otherwise the first goes before the second
    loads. The runtime's model cache takes this role over with per-device budgets.
    """

    def __init__(self, plugins: Plugins, budget_bytes: int | None = None) -> None:
        self.plugins = plugins
        self.budget_bytes = budget_bytes
        self._warm: dict[tuple[Any, ...], Any] = {}  # in least- to most-recently-used order
        self._sizes: dict[tuple[Any, ...], int] = {}
        self._labels: dict[tuple[Any, ...], str] = {}
        self.loads = 0  # how many times a model was actually loaded (tests and benchmarks read it)
        self.events: list[tuple[str, str]] = []  # ("load" | "release", "model/variant"), in order

    @staticmethod
    def _key(ref: ModelRef, device: torch.device, dtype: str) -> tuple[Any, ...]:
        return (*ref.key, str(device), dtype)

    def estimate_bytes(self, ref: ModelRef, device: torch.device, dtype: str) -> int:
        """What ``ref`` will take once loaded: measured before, else from its weights' headers."""
        key = self._key(ref, device, dtype)
        if key in self._sizes:
            return self._sizes[key]
        if ref.weights is not None:
            from arc_fabric_core.weights_size import folder_bytes

            width = (
                None
                if dtype == "auto" and device.type == "cpu"
                else 2
                if dtype in ("auto", "bfloat16", "float16")
                else 4
            )
            return sum(folder_bytes(ref.weights, width).values())
        return 0

    def warm_bytes(self) -> int:
        return sum(self._sizes.get(k, 0) for k in self._warm)

    def get(self, ref: ModelRef, device: torch.device, dtype: str, hold: Iterable[ModelRef] = ()) -> Any:
        """The warm components of ``ref``, loading them (and making room) if needed.

        Models in ``hold`` (those a running session still needs) are never released here.
        """
        key = self._key(ref, device, dtype)
        if key in self._warm:
            self._warm[key] = self._warm.pop(key)  # most recently used
            return self._warm[key]
        held = {self._key(h, device, dtype) for h in hold} | {key}
        self._make_room(self.estimate_bytes(ref, device, dtype), held)
        start = time.perf_counter()
        caller = self.plugins.stage("arc_load", ref.spec.name)
        components = caller(model=ref, device=device, dtype=dtype)
        if components is None:
            raise RuntimeError(f"arc_load returned nothing for {ref.spec.name}")
        self._warm[key] = components
        self._sizes[key] = components_bytes(components)
        self._labels[key] = ref.label
        self.loads += 1
        self.events.append(("load", ref.label))
        log.debug("loaded %s on %s in %.2fs", ref.label, device, time.perf_counter() - start)
        return components

    def _make_room(self, need: int, held: set[tuple[Any, ...]]) -> None:
        if self.budget_bytes is None:
            return
        for key in list(self._warm):  # oldest first
            if self.warm_bytes() + need <= self.budget_bytes:
                return
            if key not in held:
                self.release_key(key)

    def release_key(self, key: tuple[Any, ...]) -> None:
        components = self._warm.pop(key, None)
        if components is None:
            return
        self.events.append(("release", self._labels.get(key, str(key))))
        del components
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def release(self, ref: ModelRef, device: torch.device, dtype: str) -> None:
        """Drop a warm model (no-op if cold)."""
        self.release_key(self._key(ref, device, dtype))

    def adopt(self, ref: ModelRef, device: torch.device, dtype: str, components: Any) -> None:
        """Hold ``components`` built elsewhere as the warm copy of ``ref`` (benchmarks, notebooks)."""
        key = self._key(ref, device, dtype)
        self._warm[key] = components
        self._sizes[key] = components_bytes(components)
        self._labels[key] = ref.label

    def is_warm(self, ref: ModelRef, device: torch.device, dtype: str) -> bool:
        return self._key(ref, device, dtype) in self._warm

    def warm_labels(self) -> list[str]:
        return [self._labels.get(k, str(k)) for k in self._warm]
