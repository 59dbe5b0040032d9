"""What a plugin's loaded components hold: their tensors, their size, moving them.

The model cache and the device accounting both walk components; this is the one walk.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import fields, is_dataclass
from typing import Any

import torch


def _walk(components: Any) -> Iterable[Any]:
    """Every object inside ``components`` (a dataclass, a diffusers pipeline, a dict,
    a list or a module), each once, modules not descended into."""
    stack, visited = [components], set()
    while stack:
        obj = stack.pop()
        if obj is None or id(obj) in visited:
            continue
        visited.add(id(obj))
        yield obj
        if isinstance(obj, torch.nn.Module):
            continue
        if isinstance(obj, dict):
            stack.extend(obj.values())
        elif isinstance(obj, (list, tuple)):
            stack.extend(obj)
        elif isinstance(getattr(obj, "components", None), dict):
            stack.extend(obj.components.values())  # a diffusers pipeline
        elif is_dataclass(obj) and not isinstance(obj, type):
            stack.extend(getattr(obj, f.name) for f in fields(obj))


def component_tensors(components: Any) -> list[torch.Tensor]:
    """The parameters, buffers and loose tensors inside ``components``, each once."""
    seen: set[int] = set()
    out = []
    for obj in _walk(components):
        tensors = (*obj.parameters(), *obj.buffers()) if isinstance(obj, torch.nn.Module) else ()
        if isinstance(obj, torch.Tensor):
            tensors = (obj,)
        for tensor in tensors:
            if id(tensor) not in seen:
                seen.add(id(tensor))
                out.append(tensor)
    return out


def components_bytes(components: Any) -> int:
    """Bytes of every tensor inside ``components`` (each counted once)."""
    return sum(t.numel() * t.element_size() for t in component_tensors(components))


def move_components(components: Any, device: torch.device) -> Any:
    """Move every module inside ``components`` to ``device`` and update the ``device``
    fields a plugin keeps beside them (what ``arc_move`` does when a plugin has none)."""
    for obj in _walk(components):
        if isinstance(obj, torch.nn.Module):
            obj.to(device)
        elif is_dataclass(obj) and not isinstance(obj, type) and isinstance(getattr(obj, "device", None), torch.device):
            object.__setattr__(obj, "device", device)
    return components
