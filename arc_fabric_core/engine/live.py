"""Live sessions: the plugins' rebuildable state kept between operations in one process.

When a run ends, what the plugins kept for the session (``StepContext.state``: a KV
cache, cross-attention caches, a causal decoder's cache) is parked and kept here, with
the step it belongs to and the model that made it. The next run that continues from
exactly there with the same warm model — a resume of the session, an extension of it
(the next chunk) — takes it over instead of rebuilding it from the latents, so extending
a video block by block costs one block each time instead of the whole video so far.

Where it cannot continue (another process, another step, a model evicted or reloaded
since), nothing is kept and the plugin rebuilds its state exactly as it does after any
restore. The state is deterministic in the latents either way: a continued run equals a
rebuilt one bit for bit.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from arc_fabric_core.runtime.model_cache import CacheEvent


@dataclass
class _Kept:
    step: int
    model: str  # the model's label (what the cache's events name)
    components: int  # id of the components object that made it: a reload makes another
    state: dict[str, Any]
    bytes: int = 0


# What parked state may hold in all (a real model's KV cache is gigabytes; it is parked in
# CPU memory, which the model cache's budget does not count). Beyond it the oldest go.
DEFAULT_MAX_BYTES = 8 * 1024**3


class LiveStates:
    """Parked plugin state by session: at most ``limit`` sessions and ``max_bytes`` of
    tensors in all (the oldest go first; a state larger than ``max_bytes`` alone is not
    kept, and its session rebuilds it)."""

    def __init__(self, limit: int = 8, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.limit, self.max_bytes = limit, max_bytes
        self._kept: dict[str, _Kept] = {}
        self._lock = threading.Lock()

    def keep(self, session_id: str, step: int, model: str, components: Any, state: dict[str, Any]) -> None:
        if not state:
            return
        size = state_bytes(state)
        with self._lock:
            self._kept.pop(session_id, None)
            if size > self.max_bytes:
                return
            self._kept[session_id] = _Kept(step, model, id(components), dict(state), size)
            while len(self._kept) > self.limit or self.bytes_locked() > self.max_bytes:
                self._kept.pop(next(iter(self._kept)))

    @property
    def bytes(self) -> int:
        """What the parked states hold, in bytes of their tensors."""
        with self._lock:
            return self.bytes_locked()

    def bytes_locked(self) -> int:
        return sum(k.bytes for k in self._kept.values())

    def take(self, session_id: str, step: int, bound: Any) -> dict[str, Any] | None:
        """The state ``session_id`` left at ``step`` with ``bound``'s model, handed over
        (a second taker gets None: two runs never share one mutable cache)."""
        with self._lock:
            kept = self._kept.get(session_id)
            if kept is None or kept.step != step or kept.model != bound.ref.label:
                return None
            if kept.components != id(bound.components):
                return None
            del self._kept[session_id]
            return kept.state

    def drop(self, session_id: str) -> None:
        with self._lock:
            self._kept.pop(session_id, None)

    def on_cache_event(self, event: CacheEvent) -> None:
        """A model evicted, offloaded or moved: the state its sessions kept is for its old
        home (and its components may be remade), so it goes."""
        if event.kind in ("evict", "offload", "move", "evicting"):
            with self._lock:
                for session_id in [s for s, k in self._kept.items() if k.model == event.label]:
                    del self._kept[session_id]

    def sessions(self) -> list[str]:
        with self._lock:
            return list(self._kept)


def state_bytes(value: Any, depth: int = 0, seen: set[int] | None = None) -> int:
    """The bytes of the tensors in a plugin's state: inside mappings, sequences and the
    attributes of plain objects (a KV cache class, a streaming decoder), a few levels deep;
    a tensor met twice counts once."""
    import torch

    seen = set() if seen is None else seen
    if id(value) in seen or depth > 6:
        return 0
    seen.add(id(value))
    if isinstance(value, torch.Tensor):
        return value.numel() * value.element_size()
    if isinstance(value, dict):
        return sum(state_bytes(v, depth + 1, seen) for v in value.values())
    if isinstance(value, (list, tuple, set)):
        return sum(state_bytes(v, depth + 1, seen) for v in value)
    if isinstance(value, torch.nn.Module):
        return 0  # a model's own weights are the model cache's to count
    attributes = getattr(value, "__dict__", None)
    return state_bytes(attributes, depth + 1, seen) if isinstance(attributes, dict) else 0
