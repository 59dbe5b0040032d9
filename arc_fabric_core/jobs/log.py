"""What a job says while it runs: the lines of its log.

A job's log narrates what the runtime does for it — the model loading (or coming back
from RAM), what it evicted to make room, where its steps start and end, the video — and
carries every warning logged while it runs on its thread (a plugin's, diffusers', the
model cache's). The in-process executor and a worker process make the same lines; a
worker sends them over its socket, and the server streams them as ``log`` events.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any

from arc_fabric_core.runtime.model_cache import CacheEvent

Say = Callable[[str], None]


def size_text(nbytes: int) -> str:
    if abs(nbytes) >= 1024**3:
        return f"{nbytes / 1024**3:.2f} GiB"
    if abs(nbytes) >= 1024**2:
        return f"{nbytes / 1024**2:.1f} MiB"
    return f"{nbytes / 1024:.0f} KiB"


def cache_line(event: CacheEvent) -> str | None:
    """A log line for what the model cache did for the job (None: nothing worth a line)."""
    where = event.device
    size = f" ({size_text(event.bytes)})" if event.bytes else ""  # a model without tensors: no size
    return {
        "loading": f"loading {event.label} onto {where}" + (f" (about {size_text(event.bytes)})" if size else ""),
        "load": f"loaded {event.label} on {where} in {event.seconds:.2f} s{size}",
        "evict": f"evicted {event.label} from {where} to make room{size}",
        "offload": f"parked {event.label} in RAM to make room{size}",
        "restore": f"{event.label} back on {where} from RAM in {event.seconds:.2f} s",
        "move": f"moved {event.label} to {where} in {event.seconds:.2f} s",
    }.get(event.kind)


# Loggers whose information lines narrate a job too: what the speed settings chose and
# cost (the attention kernel auto picked, a compilation's seconds, a step cache's savings).
NARRATING = ("arc_fabric.speed",)


class _ThreadHandler(logging.Handler):
    """Warnings (and worse) logged on one thread become log lines, and so do the
    information lines of the :data:`NARRATING` loggers."""

    def __init__(self, say: Say, thread: int) -> None:
        super().__init__(logging.INFO)
        self.say, self.thread = say, thread

    def emit(self, record: logging.LogRecord) -> None:
        if record.thread != self.thread:
            return
        narrates = record.name.startswith(NARRATING)
        if record.levelno < logging.WARNING and not narrates:
            return
        try:
            message = record.getMessage().splitlines()[0] if record.getMessage() else ""
            if record.levelno < logging.WARNING:
                self.say(message)
            else:
                self.say(f"{record.levelname.lower()}: {message} [{record.name}]")
        except Exception:  # a log line must never fail the job
            self.handleError(record)


@contextlib.contextmanager
def job_log(say: Say | None, cache: Any = None) -> Iterator[Say]:
    """While the block runs, warnings logged on this thread and ``cache``'s events caused
    on it go to ``say``; yields a ``say`` that never raises (a no-op without one)."""

    def safe(line: str) -> None:
        if say is None:
            return
        try:
            say(line)
        except Exception:  # the job goes on without its log line
            logging.getLogger(__name__).debug("a log line was lost", exc_info=True)

    if say is None:
        yield safe
        return
    thread = threading.get_ident()
    handler = _ThreadHandler(safe, thread)
    for name in NARRATING:
        narrator = logging.getLogger(name)
        if narrator.getEffectiveLevel() > logging.INFO:
            narrator.setLevel(logging.INFO)  # their lines reach the handler
    root = logging.getLogger()
    root.addHandler(handler)

    def on_cache(event: CacheEvent) -> None:
        # Cache events run on the thread that asked for the model: only this job's.
        if threading.get_ident() == thread and (line := cache_line(event)) is not None:
            safe(line)

    unsubscribe = cache.subscribe(on_cache) if cache is not None else None
    try:
        yield safe
    finally:
        root.removeHandler(handler)
        if unsubscribe is not None:
            unsubscribe()
