"""A third-party executor as a package registers it under ``arc_fabric.executors``: jobs
run by an engine of this process, every job it was given remembered (tests, on the path)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from arc_fabric_core.jobs.executors import InProcessExecutor, Outcome, Progress

MADE: list[RecordingExecutor] = []  # every executor the factory made, newest last


class RecordingExecutor(InProcessExecutor):
    name = "recording"

    def __init__(self, engine: Any, settings: Any, **options: Any) -> None:
        super().__init__(engine, **options)
        self.settings = settings
        self.kinds: list[str] = []

    def run(
        self,
        kind: str,
        payload: dict[str, Any],
        on_session: Callable[[str], None],
        stop: Callable[[], bool],
        listeners: Iterable[Callable[[Progress], None]] = (),
        on_log: Callable[[str], None] | None = None,
    ) -> Outcome:
        self.kinds.append(kind)
        return super().run(kind, payload, on_session, stop, listeners, on_log)


def make_executor(settings: Any, engine_factory: Callable[[], Any]) -> RecordingExecutor:
    """The entry point's factory: called with the runtime settings and the engine factory."""
    executor = RecordingExecutor(engine_factory(), settings, previews=settings.previews, videos=settings.videos)
    MADE.append(executor)
    return executor
