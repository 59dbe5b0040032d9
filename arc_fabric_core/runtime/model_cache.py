"""The model cache: which models are warm, on which device, and which go when memory runs out.

One place decides when a model loads and when it goes. Before a model loads, its need
is known: its weights (the safetensors headers of its folder, or what it took when it
last loaded) plus the activation margin its plugin declares for the run
(``arc_activation_bytes``). It loads onto a device with room — the provider's live
numbers (NVML, the CPU's RAM budget, or a fake provider in tests), capped by
``budget_bytes`` per device when given. When no device has room, the least recently
used models that no running session holds (and nobody pinned) are evicted from the
device where that costs the least recent use, and their memory is checked to really
come back. With a CPU tier (``cpu_tier_bytes``), an evicted GPU model waits in RAM and
comes back by a copy instead of a load.

Every model has a visible state (:class:`ModelState`); listeners hear every change.
"""

from __future__ import annotations

import functools
import gc
import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import torch

from arc_fabric_core.contract.errors import ArcFabricError, InputError
from arc_fabric_core.contract.models import ModelRef
from arc_fabric_core.dispatch.plugins import Plugins
from arc_fabric_core.runtime.components import component_tensors, components_bytes, move_components
from arc_fabric_core.runtime.devices import CpuProvider, DeviceInfo, DeviceProvider, detect

log = logging.getLogger(__name__)

Key = tuple[Any, ...]


class ModelState(StrEnum):
    COLD = "cold"  # known, not in memory
    LOADING = "loading"  # being loaded (or copied back from the CPU tier)
    WARM = "warm"  # ready on ``device``
    OFFLOADED = "offloaded"  # parked in the CPU tier: back on a GPU by a copy, not a load
    EVICTING = "evicting"  # being released


@dataclass(frozen=True)
class ModelStatus:
    """What the API and the UI show of one model."""

    label: str  # "model/variant"
    dtype: str
    state: ModelState
    device: str | None  # where it is warm (or parked); None when cold
    bytes: int  # what it takes (measured once loaded, else estimated)
    pinned: bool
    holders: int  # running sessions holding it
    loads: int  # times it was loaded from its weights
    last_used: float | None  # monotonic seconds


@dataclass(frozen=True)
class CacheEvent:
    kind: str  # loading | load | evicting | evict | offload | restore | move | pin | unpin | release-unconfirmed
    label: str
    device: str | None
    bytes: int
    seconds: float = 0.0


class NoRoomError(ArcFabricError):
    """No device can take a model, even with every evictable model gone."""


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


# What models load in: a torch dtype that is not a float one (int8, bool) loads nowhere.
DTYPES = ("auto", "float32", "bfloat16", "float16")


def check_dtype(dtype: str) -> str:
    if dtype not in DTYPES:
        raise InputError("dtype", f"must be one of {', '.join(DTYPES)}, got {dtype!r}")
    return dtype


@functools.cache
def default_provider() -> DeviceProvider:
    """The machine's devices, detected once per process (so the no-GPU line is said once)."""
    return detect()


@dataclass
class _Entry:
    ref: ModelRef
    dtype: str
    state: ModelState = ModelState.COLD
    device: str | None = None
    components: Any = None
    bytes: int = 0
    measured: bool = False
    pinned: bool = False
    loads: int = 0
    last_used: float | None = None
    ready: threading.Event = field(default_factory=threading.Event)

    @property
    def label(self) -> str:
        return self.ref.label


class ModelCache:
    """Warm models across the sessions of one process, placed and evicted by memory.

    ``provider`` lists the devices (default: detected once per process). ``budget_bytes``
    caps what warm models may take on one device (None: the device's memory is the only
    limit). ``reserve_bytes`` is kept free on every device (for other processes and the
    allocator's slack). ``cpu_tier_bytes`` > 0 parks evicted GPU models in RAM.
    """

    def __init__(
        self,
        plugins: Plugins,
        provider: DeviceProvider | None = None,
        budget_bytes: int | None = None,
        reserve_bytes: int = 0,
        cpu_tier_bytes: int = 0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.plugins = plugins
        self._provider = provider  # detected on first use: validating input needs no GPU inventory
        self._cpu_provider: CpuProvider | None = None
        self._quiet_provider: DeviceProvider | None = None  # looked at before the first load
        self.budget_bytes = budget_bytes
        self.reserve_bytes = reserve_bytes
        self.cpu_tier_bytes = cpu_tier_bytes
        self._clock = clock
        self._lock = threading.RLock()
        self._entries: dict[Key, _Entry] = {}
        self._holders: dict[str, Key] = {}  # holder (a running session) -> the model it holds
        self._reserved: dict[str, int] = {}  # device -> bytes promised to loads in flight
        self._listeners: list[Callable[[CacheEvent], None]] = []
        self.loads = 0  # loads from weights (tests and benchmarks read it)
        self.events: list[tuple[str, str]] = []  # (kind, "model/variant") in order

    @property
    def provider(self) -> DeviceProvider:
        if self._provider is None:
            self._provider = default_provider()
        return self._provider

    @property
    def _cpu(self) -> CpuProvider:
        if isinstance(self._provider, CpuProvider):
            return self._provider
        if self._cpu_provider is None:
            self._cpu_provider = CpuProvider()
        return self._cpu_provider

    # ------------------------------------------------------------ looking

    @staticmethod
    def key(ref: ModelRef, dtype: str) -> Key:
        return (*ref.key, dtype)

    def states(self) -> list[ModelStatus]:
        with self._lock:
            return [
                ModelStatus(
                    label=e.label,
                    dtype=e.dtype,
                    state=e.state,
                    device=e.device,
                    bytes=e.bytes,
                    pinned=e.pinned,
                    holders=sum(1 for k in self._holders.values() if k == key),
                    loads=e.loads,
                    last_used=e.last_used,
                )
                for key, e in self._entries.items()
            ]

    def state(self, ref: ModelRef, dtype: str = "auto") -> ModelStatus | None:
        label = ref.label
        return next((s for s in self.states() if s.label == label and s.dtype == dtype), None)

    def is_warm(self, ref: ModelRef, device: str | torch.device | None = None, dtype: str = "auto") -> bool:
        entry = self._entries.get(self.key(ref, dtype))
        if entry is None or entry.state is not ModelState.WARM:
            return False
        return device is None or str(device) == "auto" or entry.device == _device_id(device)

    def warm_labels(self) -> list[str]:
        """Warm models, least recently used first."""
        with self._lock:
            warm = [e for e in self._entries.values() if e.state is ModelState.WARM]
            return [e.label for e in sorted(warm, key=lambda e: e.last_used or 0.0)]

    def warm_bytes(self, device: str | None = None) -> int:
        with self._lock:
            return sum(
                e.bytes
                for e in self._entries.values()
                if e.state in (ModelState.WARM, ModelState.LOADING, ModelState.OFFLOADED)
                and (device is None or e.device == device)
            )

    def placement_of(self, ref: ModelRef, dtype: str = "auto") -> str:
        """The device a warm model is on, as the provider names it ("cuda:1", "cpu")."""
        entry = self._entries.get(self.key(ref, dtype))
        if entry is None or entry.device is None:
            raise ArcFabricError(f"{ref.label} is not loaded")
        return entry.device

    def device_of(self, ref: ModelRef, dtype: str = "auto") -> torch.device:
        """The torch device a warm model computes on (a fake GPU computes on the CPU)."""
        return self._torch_device(self.placement_of(ref, dtype))

    def subscribe(self, listener: Callable[[CacheEvent], None]) -> Callable[[], None]:
        """Call ``listener`` on every load, eviction, offload...; returns the unsubscribe."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    def devices(self) -> list[DeviceInfo]:
        return self.provider.devices()

    def every_device(self) -> list[DeviceInfo]:
        """Every device a model could run on: the provider's, and the CPU's RAM budget
        where the provider does not list the CPU (a GPU provider). Before the first load it
        looks without announcing (the no-GPU line belongs to the run that uses the devices)."""
        if self._provider is None:
            if self._quiet_provider is None:
                self._quiet_provider = detect(announce=False)
            devices = self._quiet_provider.devices()
        else:
            devices = self.provider.devices()
        if any(d.id == "cpu" for d in devices):
            return devices
        return [*devices, *self._cpu.devices()]

    # ------------------------------------------------------------ estimates

    def estimate_bytes(self, ref: ModelRef, device: str | torch.device = "cpu", dtype: str = "auto") -> int:
        """What ``ref``'s weights will take once loaded: measured before, else from its weights' headers."""
        entry = self._entries.get(self.key(ref, dtype))
        if entry is not None and entry.measured:
            return entry.bytes
        if ref.weights is not None:
            from arc_fabric_core.runtime.weights_size import folder_bytes

            auto = str(device) == "auto"
            on_cpu = isinstance(self.provider, CpuProvider) if auto else _device_id(device) == "cpu"
            width = None if dtype == "auto" and on_cpu else 2 if dtype in ("auto", "bfloat16", "float16") else 4
            return sum(folder_bytes(ref.weights, width).values())
        return 0

    # ------------------------------------------------------------ getting a model

    def get(
        self,
        ref: ModelRef,
        device: str | torch.device = "auto",
        dtype: str = "auto",
        hold: Iterable[ModelRef] = (),
        holder: str | None = None,
        margin: int = 0,
    ) -> Any:
        """The warm components of ``ref``, loading them (and making room) if needed.

        ``device``: "auto" places the model where there is room; an explicit device
        is where it must be. ``holder`` (a running session's id) holds this model
        until the holder takes another or lets go (:meth:`let_go`); models in ``hold``
        are spared for this call. ``margin``: activation bytes the run needs beside
        the weights.
        """
        key = self.key(ref, dtype)
        want = None if str(device) == "auto" else _device_id(device)
        while True:
            with self._lock:
                entry = self._entries.setdefault(key, _Entry(ref, dtype))
                if entry.state is ModelState.WARM and (want is None or entry.device == want):
                    self._touch(entry, key, holder)
                    return entry.components
                if entry.state in (ModelState.LOADING, ModelState.EVICTING):
                    waiter = entry.ready
                else:
                    waiter = None
                    spare = {self.key(h, dtype) for h in hold} | {key}
                    need = entry.bytes if entry.measured else self.estimate_bytes(ref, want or "auto", dtype)
                    if entry.state is ModelState.WARM:  # warm elsewhere: it moves
                        source = "move"
                    elif entry.state is ModelState.OFFLOADED:
                        source = "restore"
                    else:
                        source = "load"
                    previous, was = entry.device, entry.state
                    # Loading from here on: a parked model on its way back is no longer the
                    # CPU tier's to drop while room is made for it.
                    entry.state, entry.ready = ModelState.LOADING, threading.Event()
                    try:
                        target = self._make_room(need, margin, want, spare, entry, holder)
                    except BaseException:
                        entry.state = was
                        entry.ready.set()
                        raise
                    self._reserved[target] = self._reserved.get(target, 0) + need
            if waiter is not None:
                waiter.wait()
                continue
            try:
                if source == "load":  # a load can take minutes: say so before, not only after
                    self._emit("loading", entry, target, need)
                return self._bring(entry, key, source, previous, target, holder)
            finally:
                with self._lock:
                    self._reserved[target] -= need
                    entry.ready.set()

    def _bring(
        self, entry: _Entry, key: Key, source: str, previous: str | None, target: str, holder: str | None
    ) -> Any:
        start = time.perf_counter()
        torch_device = self._torch_device(target)
        try:
            if source == "load":
                caller = self.plugins.stage("arc_load", entry.ref.spec.name)
                components = caller(model=entry.ref, device=torch_device, dtype=entry.dtype)
                if components is None:
                    raise ArcFabricError(f"arc_load returned nothing for {entry.ref.spec.name}")
            else:
                components = self._move(entry, torch_device)
        except BaseException:
            with self._lock:  # a failed load leaves it cold; a failed copy leaves it where it was
                if source == "load":
                    entry.state, entry.device, entry.components = ModelState.COLD, None, None
                else:
                    entry.state = ModelState.WARM if source == "move" else ModelState.OFFLOADED
                    entry.device = previous
            raise
        self._account(target, components)
        size = components_bytes(components)
        with self._lock:
            entry.components, entry.device, entry.state = components, target, ModelState.WARM
            entry.bytes, entry.measured = size, True
            if source == "load":
                entry.loads += 1
                self.loads += 1
            self._touch(entry, key, holder)
        self._emit(source, entry, target, size, time.perf_counter() - start)
        return components

    def _touch(self, entry: _Entry, key: Key, holder: str | None) -> None:
        entry.last_used = self._clock()
        if holder is not None:
            self._holders[holder] = key

    def let_go(self, holder: str) -> None:
        """``holder`` (a session that stopped running) no longer holds its model."""
        with self._lock:
            self._holders.pop(holder, None)

    def preload(self, ref: ModelRef, device: str | torch.device = "auto", dtype: str = "auto") -> ModelStatus:
        """Load ``ref`` now (a server warming its models); returns its state."""
        self.get(ref, device, dtype)
        status = self.state(ref, dtype)
        assert status is not None
        return status

    def pin(self, ref: ModelRef, dtype: str = "auto", pinned: bool = True) -> None:
        """A pinned model is never evicted (it loads on its first use, or with :meth:`preload`)."""
        with self._lock:
            entry = self._entries.setdefault(self.key(ref, dtype), _Entry(ref, dtype))
            entry.pinned = pinned
        self._emit("pin" if pinned else "unpin", entry, entry.device, entry.bytes)

    # ------------------------------------------------------------ placement

    def _candidates(self, want: str | None) -> list[DeviceInfo]:
        if want == "cpu":
            return self._cpu.devices()
        devices = self.provider.devices()
        if want is None:
            return devices
        chosen = [d for d in devices if d.id == want]
        if not chosen:
            # An explicit device the provider does not list (e.g. "cuda" before NVML answers):
            # torch decides; the budget alone limits it.
            kind = want.split(":")[0]
            return [DeviceInfo(id=want, kind=kind, name=want, memory_total=0, memory_used=0, memory_free=0)]
        return chosen

    def _room(self, device: DeviceInfo, margin: int = 0) -> int | None:
        """Bytes of weights a new model may take on ``device`` now, keeping ``margin`` free
        for its activations (None: unknown, only the budget limits). The budget caps warm
        weights; activations come and go, so only the device's free memory must hold them."""
        known = device.memory_total > 0
        reserved = self._reserved.get(device.id, 0)
        room = device.memory_free - self.reserve_bytes - reserved - margin if known else None
        if self.budget_bytes is not None:
            left = self.budget_bytes - self.warm_bytes(device.id) - self._reserved.get(device.id, 0)
            if device.id == "cpu":
                left += self._tier_bytes()  # parked GPU models live under the CPU tier's own cap
            room = left if room is None else min(room, left)
        return room

    def _tier_bytes(self) -> int:
        return sum(e.bytes for e in self._entries.values() if e.state is ModelState.OFFLOADED)

    def _make_room(
        self, need: int, margin: int, want: str | None, spare: set[Key], entry: _Entry, holder: str | None
    ) -> str:
        """The device ``entry`` goes to, after evicting what must go to fit its ``need``
        (weights) and ``margin`` (activations) there."""
        devices = self._candidates(want)
        # A model already on a candidate device keeps its bytes there while it moves.
        fits = [(room, d) for d in devices if (room := self._room(d, margin)) is None or room >= need]
        if fits:
            if entry.device in {d.id for _, d in fits} and entry.state is not ModelState.OFFLOADED:
                return entry.device  # type: ignore[return-value]
            return max(fits, key=lambda rd: float("inf") if rd[0] is None else rd[0])[1].id
        # Evict on the device where it costs the least recent use: per device the shortest
        # least-recently-used run of evictable models that frees enough.
        best: tuple[float, int, str, list[_Entry]] | None = None
        for device in devices:
            room = self._room(device, margin)
            assert room is not None
            victims, freed = [], 0
            for victim in self._evictable(device.id, spare, holder):
                if room + freed >= need:
                    break
                victims.append(victim)
                freed += victim.bytes
            if room + freed < need:
                continue
            newest = max((v.last_used or 0.0) for v in victims) if victims else float("-inf")
            option = (newest, freed, device.id, victims)
            if best is None or option[:2] < best[:2]:
                best = option
        if best is None:
            raise NoRoomError(self._no_room(need, margin, devices, entry))
        _, _, device_id, victims = best
        for victim in victims:
            self._evict(victim)
        device = next(d for d in self._candidates(device_id) if d.id == device_id)
        room = self._room(device, margin)
        if room is not None and room < need:
            raise NoRoomError(
                f"{entry.label} needs {_gib(need + margin)} on {device_id}; evicting "
                f"{', '.join(v.label for v in victims)} left {_gib(room)} free: memory did not come back "
                "(something still references an evicted model's tensors)"
            )
        return device_id

    def _evictable(self, device_id: str, spare: set[Key], holder: str | None = None) -> list[_Entry]:
        # A holder asking for its next model (a hybrid's next stage) lets go of its last one.
        held = {k for h, k in self._holders.items() if h != holder} | spare
        out = [
            e
            for k, e in self._entries.items()
            if e.device == device_id and e.state is ModelState.WARM and not e.pinned and k not in held
        ]
        return sorted(out, key=lambda e: e.last_used or 0.0)

    def _no_room(self, need: int, margin: int, devices: list[DeviceInfo], entry: _Entry) -> str:
        where = ", ".join(f"{d.id} has {_gib(self._room(d) or 0)} free" for d in devices)
        held = set(self._holders.values())
        kept = [e.label for k, e in self._entries.items() if e.state is ModelState.WARM and (e.pinned or k in held)]
        return (
            f"{entry.label} needs {_gib(need + margin)} ({_gib(need)} weights, {_gib(margin)} activations) "
            f"and no device can take it: {where}"
            + (f"; held or pinned: {', '.join(kept)}" if kept else "")
            + ". Free a device, lower the resolution or frames, or give a smaller variant"
        )

    # ------------------------------------------------------------ eviction

    def _evict(self, entry: _Entry) -> None:
        """Release ``entry`` from its device (to the CPU tier if there is one and it fits)."""
        device = entry.device
        assert device is not None
        before = self._free(device)
        entry.state = ModelState.EVICTING
        self._emit("evicting", entry, device, entry.bytes)
        if device != "cpu" and self.cpu_tier_bytes and self._park(entry):
            self._emit("offload", entry, "cpu", entry.bytes)
        else:
            entry.components, entry.device, entry.state = None, None, ModelState.COLD
            self._emit("evict", entry, device, entry.bytes)
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        self._confirm_release(entry, device, before)

    def _park(self, entry: _Entry) -> bool:
        """Move ``entry`` into the CPU tier, making room there by dropping its oldest."""
        if entry.bytes > self.cpu_tier_bytes:
            return False
        parked = sorted(
            (e for e in self._entries.values() if e.state is ModelState.OFFLOADED), key=lambda e: e.last_used or 0.0
        )
        while parked and self._tier_bytes() + entry.bytes > self.cpu_tier_bytes:
            oldest = parked.pop(0)
            oldest.components, oldest.device, oldest.state = None, None, ModelState.COLD
            self._emit("evict", oldest, "cpu", oldest.bytes)
        entry.components = self._move(entry, torch.device("cpu"))
        self._account("cpu", entry.components)
        entry.device, entry.state = "cpu", ModelState.OFFLOADED
        return True

    def _confirm_release(self, entry: _Entry, device: str, before: int | None) -> None:
        """The provider must show the memory back; a model something still references does not free it."""
        if before is None or device == "cpu":  # the CPU's available memory is too noisy to judge by
            return
        after = self._free(device)
        if after is not None and after - before < entry.bytes // 2:
            log.warning(
                "%s left %s but only %s of its %s came back: something still holds its tensors",
                entry.label,
                device,
                _gib(after - before),
                _gib(entry.bytes),
            )
            self._emit("release-unconfirmed", entry, device, entry.bytes)

    def evict(self, ref: ModelRef, dtype: str = "auto") -> None:
        """Release a warm model now (refused while a running session holds it)."""
        key = self.key(ref, dtype)
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or entry.state not in (ModelState.WARM, ModelState.OFFLOADED):
                return
            if key in self._holders.values():
                raise ArcFabricError(f"{ref.label} is held by a running session; it is evicted once that stops")
            if entry.state is ModelState.OFFLOADED:
                entry.components, entry.device, entry.state = None, None, ModelState.COLD
                self._emit("evict", entry, "cpu", entry.bytes)
                gc.collect()
                return
            tier, self.cpu_tier_bytes = self.cpu_tier_bytes, 0  # an explicit eviction frees, it does not park
            try:
                self._evict(entry)
            finally:
                self.cpu_tier_bytes = tier

    def release(self, ref: ModelRef, device: Any = None, dtype: str = "auto") -> None:
        """Alias of :meth:`evict` (``device`` is ignored: a model is warm in one place)."""
        self.evict(ref, dtype)

    def adopt(self, ref: ModelRef, device: str | torch.device, dtype: str, components: Any) -> None:
        """Hold ``components`` built elsewhere as the warm copy of ``ref`` (benchmarks, notebooks)."""
        with self._lock:
            entry = self._entries.setdefault(self.key(ref, dtype), _Entry(ref, dtype))
            entry.components, entry.device, entry.state = components, _device_id(device), ModelState.WARM
            entry.bytes, entry.measured, entry.last_used = components_bytes(components), True, self._clock()

    # ------------------------------------------------------------ helpers

    def _move(self, entry: _Entry, device: torch.device) -> Any:
        mover = self.plugins.optional_stage("arc_move", entry.ref.spec.name)
        if mover is not None:
            return mover(model=entry.ref, components=entry.components, device=device)
        return move_components(entry.components, device)

    def _account(self, device_id: str, components: Any) -> None:
        if device_id == "cpu" and self._provider is None:
            return  # a CPU-only run never needs the GPU inventory
        attach = getattr(self.provider, "attach", None)
        if attach is not None:
            attach(device_id, components)

    def _torch_device(self, device_id: str) -> torch.device:
        if device_id == "cpu":
            return torch.device("cpu")
        mapper = getattr(self.provider, "torch_device", None)
        return mapper(device_id) if mapper is not None else torch.device(device_id)

    def _free(self, device_id: str) -> int | None:
        for d in self._candidates(device_id):
            if d.id == device_id and d.memory_total > 0:
                return d.memory_free
        return None

    def _emit(self, kind: str, entry: _Entry, device: str | None, nbytes: int, seconds: float = 0.0) -> None:
        if kind in ("load", "evict", "offload", "restore", "move"):
            self.events.append((kind, entry.label))
        if kind not in ("evicting", "loading"):
            log.debug("%s %s on %s (%s, %.2fs)", kind, entry.label, device, _gib(nbytes), seconds)
        event = CacheEvent(kind, entry.label, device, nbytes, seconds)
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception:  # a listener's failure never breaks the cache
                log.exception("cache listener failed on %s", event)


def _device_id(device: str | torch.device) -> str:
    d = torch.device(device)
    if d.type == "cuda" and d.index is None:
        return "cuda:0"
    return str(d)


def _gib(nbytes: int) -> str:
    if abs(nbytes) >= 1024**3:
        return f"{nbytes / 1024**3:.2f} GiB"
    return f"{nbytes / 1024**2:.1f} MiB"


__all__ = [
    "CacheEvent",
    "ModelCache",
    "ModelState",
    "ModelStatus",
    "NoRoomError",
    "check_dtype",
    "component_tensors",
    "components_bytes",
    "default_provider",
    "move_components",
    "resolve_device",
]
