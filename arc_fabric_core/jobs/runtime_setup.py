"""One runtime configuration: the model cache, the engine and the executor a process
works with, built from one :class:`RuntimeSettings`.

The command line, the server, the worker processes, ``jobs work`` and the conformance
kit all build through here, so that a setting means the same thing everywhere and a new
one is added once. Executors are found by name in the ``arc_fabric.executors``
entry-point group (``inprocess`` and ``subprocess`` ship with the core): a distributed
executor is one more entry, a factory called as ``factory(settings, engine_factory)``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from arc_fabric_core.contract.errors import ArcFabricError, InputError
from arc_fabric_core.dispatch.plugins import Plugins, get_plugins
from arc_fabric_core.jobs.executors import CANCEL_GRACE_SECONDS, Executor, InProcessExecutor, SubprocessExecutor
from arc_fabric_core.runtime.model_cache import ModelCache
from arc_fabric_core.store.files import SessionStore, default_store_dir

if TYPE_CHECKING:
    from arc_fabric_core.engine.facade import Engine

log = logging.getLogger(__name__)

EXECUTOR_GROUP = "arc_fabric.executors"


class RuntimeSettings(BaseModel):
    """Everything the cache, the engine and the executor of a process are built from.

    Values are taken as given (ranges are checked by what uses them, with the messages
    users know); memory sizes are bytes, parsed by the caller, which names its own flag."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    store_dir: Path = Field(default_factory=default_store_dir, description="The session store's root")
    device: str = Field("auto", description="auto (the cache places each model), cpu, cuda, cuda:N")
    dtype: str = Field("auto", description="auto: the plugin's choice for the device")
    checkpoint_every: int = Field(1, description="Checkpoint every k steps; 0 = none")
    checkpoint_keep: int = Field(0, description="Keep the newest n checkpoints; 0 = all")
    checkpoint_keep_steps: tuple[int, ...] = Field((), description="Steps kept whatever checkpoint_keep says")
    model_memory: int | None = Field(None, description="Cap on warm models per device, in bytes; None = none")
    cpu_tier: int = Field(0, description="RAM that keeps evicted GPU models warm, in bytes")
    executor: str = Field("inprocess", description="An executor's name in the arc_fabric.executors group")
    pythons: dict[str, str] = Field(default_factory=dict, description="subprocess: model -> its env's interpreter")
    worker_plugins: tuple[str, ...] = Field((), description="subprocess: modules its workers register as plugins")
    previews: bool = Field(False, description="Every step's progress carries a preview JPEG")
    videos: bool = Field(False, description="A finished session is decoded to its video.mp4 before its job ends")
    cancel_grace: float = Field(
        CANCEL_GRACE_SECONDS, description="subprocess: seconds a cancelled job has to reach its next step"
    )
    executor_options: dict[str, Any] = Field(
        default_factory=dict, description="Passed on to the executor (a third-party one's own options)"
    )


# ---------------------------------------------------------------- cache and engine


def build_cache(settings: RuntimeSettings, plugins: Plugins | None = None) -> ModelCache:
    """A model cache with the settings' memory budget and CPU tier."""
    return ModelCache(
        plugins if plugins is not None else get_plugins(),
        budget_bytes=settings.model_memory,
        cpu_tier_bytes=settings.cpu_tier,
    )


_process_caches: list[tuple[Plugins, ModelCache]] = []
_process_lock = threading.Lock()


def process_cache(settings: RuntimeSettings, plugins: Plugins | None = None) -> ModelCache:
    """This process's one cache for ``plugins``, made on first use: every engine built
    over it shares the warm models (a Hydra multirun's jobs run in one process). The
    newest settings' budget applies."""
    plugins = plugins if plugins is not None else get_plugins()
    with _process_lock:
        cache = next((c for known, c in _process_caches if known is plugins), None)
        if cache is None:
            cache = build_cache(settings, plugins)
            _process_caches.append((plugins, cache))
    cache.budget_bytes = settings.model_memory
    return cache


def build_engine(
    settings: RuntimeSettings,
    plugins: Plugins | None = None,
    cache: ModelCache | None = None,
    store: SessionStore | None = None,
) -> Engine:
    """An engine over the settings' store (or ``store``, one already open), with
    ``cache`` (default: a new one from the settings) and the checkpoint policy."""
    from arc_fabric_core.engine.facade import Engine

    if plugins is None:
        plugins = cache.plugins if cache is not None else get_plugins()
    return Engine(
        store if store is not None else SessionStore(settings.store_dir),
        plugins=plugins,
        device=settings.device,
        dtype=settings.dtype,
        cache=cache if cache is not None else build_cache(settings, plugins),
        checkpoint_every=settings.checkpoint_every,
        checkpoint_keep=settings.checkpoint_keep,
        checkpoint_keep_steps=settings.checkpoint_keep_steps,
    )


# ---------------------------------------------------------------- executors

EngineFactory = Callable[[], Any]
ExecutorFactory = Callable[[RuntimeSettings, EngineFactory], Executor]


def inprocess_executor(settings: RuntimeSettings, engine_factory: EngineFactory) -> Executor:
    """Jobs run by an engine of this process (the one ``engine_factory`` gives)."""
    return InProcessExecutor(engine_factory(), previews=settings.previews, videos=settings.videos)


def subprocess_executor(settings: RuntimeSettings, engine_factory: EngineFactory) -> Executor:
    """Jobs run by a worker process per plugin env; each worker builds its own engine
    and cache from these settings (its command line carries them)."""
    worker_args = [a for module in settings.worker_plugins for a in ("--plugin", module)]
    if settings.model_memory is not None:
        worker_args += ["--model-memory", str(settings.model_memory)]
    if settings.cpu_tier:
        worker_args += ["--cpu-tier", str(settings.cpu_tier)]
    options: dict[str, Any] = {
        "device": settings.device,
        "dtype": settings.dtype,
        "previews": settings.previews,
        "videos": settings.videos,
        "cancel_grace": settings.cancel_grace,
        **settings.executor_options,
    }
    options["worker_args"] = [*worker_args, *options.get("worker_args", ())]
    return SubprocessExecutor(settings.store_dir, settings.pythons, **options)


# Used when the core's entry points are not installed (a checkout run from its folder).
BUILT_IN_EXECUTORS: dict[str, ExecutorFactory] = {
    "inprocess": inprocess_executor,
    "subprocess": subprocess_executor,
}


def _entry_points() -> dict[str, metadata.EntryPoint]:
    found: dict[str, metadata.EntryPoint] = {}
    for ep in metadata.entry_points(group=EXECUTOR_GROUP):
        found.setdefault(ep.name, ep)
    return found


def executor_names() -> list[str]:
    """Every executor that can be named: the built-in ones, then the installed ones."""
    return [*BUILT_IN_EXECUTORS, *sorted(set(_entry_points()) - set(BUILT_IN_EXECUTORS))]


def executor_factory(name: str) -> ExecutorFactory:
    """The factory of the executor called ``name``: its entry point in the
    ``arc_fabric.executors`` group, else the built-in one of that name."""
    ep = _entry_points().get(name)
    if ep is None:
        if name in BUILT_IN_EXECUTORS:
            return BUILT_IN_EXECUTORS[name]
        raise InputError("executor", f"unknown executor {name!r}; allowed: {', '.join(executor_names())}")
    try:
        factory = ep.load()
    except Exception as exc:  # a broken third-party package: one line naming it
        reason = f"{type(exc).__name__}: {exc}"
        raise ArcFabricError(f"executor {name!r} ({ep.value}) could not be loaded: {reason}") from exc
    if not callable(factory):
        raise ArcFabricError(f"executor {name!r} ({ep.value}) is not a factory: expected a callable, got {factory!r}")
    return factory  # type: ignore[no-any-return]


def build_executor(settings: RuntimeSettings, engine_factory: EngineFactory | None = None) -> Executor:
    """The executor ``settings.executor`` names. ``engine_factory`` gives the engine an
    executor that runs jobs in this process uses (default: one built from the settings);
    executors that run jobs elsewhere never call it."""
    factory = executor_factory(settings.executor)
    return factory(settings, engine_factory or (lambda: build_engine(settings)))


__all__ = [
    "BUILT_IN_EXECUTORS",
    "EXECUTOR_GROUP",
    "RuntimeSettings",
    "build_cache",
    "build_engine",
    "build_executor",
    "executor_factory",
    "executor_names",
    "process_cache",
]
