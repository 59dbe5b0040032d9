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


class LiveStates:
    """Parked plugin state by session, at most ``limit`` sessions (the oldest go first)."""

    def __init__(self, limit: int = 8) -> None:
        self.limit = limit
        self._kept: dict[str, _Kept] = {}
        self._lock = threading.Lock()

    def keep(self, session_id: str, step: int, model: str, components: Any, state: dict[str, Any]) -> None:
        if not state:
            return
        with self._lock:
            self._kept.pop(session_id, None)
            self._kept[session_id] = _Kept(step, model, id(components), dict(state))
            while len(self._kept) > self.limit:
                self._kept.pop(next(iter(self._kept)))

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
