"""An event bus between the worker thread (jobs, the model cache) and WebSocket clients.

Publishing is thread-safe and never blocks the publisher: every subscriber has a bounded
queue on the event loop; a client too slow to keep up loses its oldest events, not the
server's time. Each event has a monotonically increasing ``seq``. An event is turned into
JSON once, by the publisher (off the event loop), not once per client.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import threading
import time
from typing import Any


class EventBus:
    def __init__(self, maxsize: int = 1000) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._subscribers: set[asyncio.Queue[str]] = set()
        self._seq = itertools.count(1)
        self._lock = threading.Lock()
        self.maxsize = maxsize

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def publish(self, type_: str, **data: Any) -> dict[str, Any]:
        """Send an event to every subscriber (from any thread)."""
        loop = self._loop
        with self._lock:  # seq order is delivery order
            event = {"type": type_, "seq": next(self._seq), "time": time.time(), **data}
            if loop is not None and not loop.is_closed():
                with contextlib.suppress(RuntimeError):  # the loop is shutting down
                    loop.call_soon_threadsafe(self._deliver, json.dumps(event))
        return event

    def _deliver(self, text: str) -> None:
        for queue in list(self._subscribers):
            if queue.full():
                queue.get_nowait()  # drop the oldest: a slow client never slows the server
            queue.put_nowait(text)

    def subscribe(self) -> asyncio.Queue[str]:
        """A queue of events as JSON text."""
        queue: asyncio.Queue[str] = asyncio.Queue(self.maxsize)
        self._subscribers.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[str]) -> None:
        self._subscribers.discard(queue)
