"""What the machine has to run models on: GPUs through NVML, else the CPU.

A provider lists devices with their memory; the model cache (and the API) read it.
GPUs are identified by UUID and named by the torch index they get after
``CUDA_VISIBLE_DEVICES`` (which may list indices or UUIDs); ``ARC_GPU_COUNT`` keeps
only the first N of them. NVML missing or failing means the CPU, with one log line.

    python -m arc_fabric_core devices       # the inventory as JSON
"""

from __future__ import annotations

import logging
import os
import weakref
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Protocol

from arc_fabric_core.contract.errors import InputError

log = logging.getLogger("arc_fabric")

GIB = 1024**3


@dataclass(frozen=True)
class GpuProcess:
    pid: int
    used_bytes: int | None  # None where the driver does not say


@dataclass(frozen=True)
class DeviceInfo:
    """One device as the runtime sees it; memory in bytes."""

    id: str  # the torch device string: "cuda:0" (after CUDA_VISIBLE_DEVICES), or "cpu"
    kind: str  # "cuda" or "cpu"
    name: str
    memory_total: int
    memory_used: int
    memory_free: int
    uuid: str | None = None
    physical_index: int | None = None  # NVML's index, before CUDA_VISIBLE_DEVICES
    utilization: int | None = None  # percent of time a kernel ran, last sample
    processes: tuple[GpuProcess, ...] = field(default_factory=tuple)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class DeviceProvider(Protocol):
    """Anything that can list the devices and their current memory."""

    name: str

    def devices(self) -> list[DeviceInfo]: ...


# ---------------------------------------------------------------- visible GPUs


def visible_gpus(physical: list[str], cuda_visible: str | None, gpu_count: str | None = None) -> list[int]:
    """Physical indices of the GPUs this process may use, in torch's order.

    ``physical`` holds each GPU's UUID by NVML index. ``cuda_visible`` follows CUDA's
    rules: a comma list of indices or (prefixes of) UUIDs; unset means all; parsing stops
    at the first entry that names no GPU, as CUDA does. ``gpu_count`` keeps the first N.
    """
    if cuda_visible is None:
        order = list(range(len(physical)))
    else:
        order = []
        for raw in cuda_visible.split(","):
            entry = raw.strip()
            if not entry:
                break
            if entry.lstrip("-").isdigit():
                index = int(entry)
                if not 0 <= index < len(physical):
                    break
            else:
                matches = [i for i, uuid in enumerate(physical) if uuid.startswith((entry, f"GPU-{entry}"))]
                if len(matches) != 1:
                    break
                index = matches[0]
            if index in order:
                break  # CUDA refuses duplicates; stop like an invalid entry
            order.append(index)
    if gpu_count not in (None, ""):
        try:
            count = int(gpu_count)
        except ValueError:
            count = -1
        if count < 0:
            raise InputError("ARC_GPU_COUNT", f"must be a whole number >= 0, got {gpu_count!r}")
        order = order[:count]
    return order


# ---------------------------------------------------------------- providers


class NvmlProvider:
    """GPUs through NVML (``nvidia-ml-py``, imported as ``pynvml``)."""

    name = "nvml"

    def __init__(self, nvml: Any = None, environ: dict[str, str] | None = None) -> None:
        if nvml is None:
            import pynvml as nvml
        self._nvml = nvml
        env = os.environ if environ is None else environ
        nvml.nvmlInit()  # raises when there is no driver: the caller falls back to the CPU
        count = nvml.nvmlDeviceGetCount()
        uuids = [_text(nvml.nvmlDeviceGetUUID(nvml.nvmlDeviceGetHandleByIndex(i))) for i in range(count)]
        self._order = visible_gpus(uuids, env.get("CUDA_VISIBLE_DEVICES"), env.get("ARC_GPU_COUNT"))

    def devices(self) -> list[DeviceInfo]:
        nvml = self._nvml
        out = []
        for torch_index, physical in enumerate(self._order):
            handle = nvml.nvmlDeviceGetHandleByIndex(physical)
            memory = nvml.nvmlDeviceGetMemoryInfo(handle)
            try:
                utilization = int(nvml.nvmlDeviceGetUtilizationRates(handle).gpu)
            except nvml.NVMLError:
                utilization = None  # not supported on every board (or under MIG)
            try:
                procs = tuple(
                    GpuProcess(pid=int(p.pid), used_bytes=_bytes_or_none(p.usedGpuMemory))
                    for p in nvml.nvmlDeviceGetComputeRunningProcesses(handle)
                )
            except nvml.NVMLError:
                procs = ()
            out.append(
                DeviceInfo(
                    id=f"cuda:{torch_index}",
                    kind="cuda",
                    name=_text(nvml.nvmlDeviceGetName(handle)),
                    uuid=_text(nvml.nvmlDeviceGetUUID(handle)),
                    physical_index=physical,
                    memory_total=int(memory.total),
                    memory_used=int(memory.used),
                    memory_free=int(memory.free),
                    utilization=utilization,
                    processes=procs,
                )
            )
        return out


class CpuProvider:
    """The CPU as one device, its memory a RAM budget.

    ``ARC_CPU_MEMORY`` (bytes, or with a G/GiB suffix) sets the budget; the default is
    the machine's RAM. Free memory is the smaller of what the budget leaves and what
    the kernel reports available.
    """

    name = "cpu"

    def __init__(self, budget: int | None = None, environ: dict[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        total = _physical_memory()
        if budget is None and env.get("ARC_CPU_MEMORY"):
            budget = parse_bytes(env["ARC_CPU_MEMORY"], "ARC_CPU_MEMORY")
        self.budget = min(budget, total) if budget else total

    def devices(self) -> list[DeviceInfo]:
        available = _available_memory()
        used = max(0, _physical_memory() - available)
        free = max(0, min(available, self.budget - used))
        return [
            DeviceInfo(
                id="cpu",
                kind="cpu",
                name=_cpu_name(),
                memory_total=self.budget,
                memory_used=self.budget - free,
                memory_free=free,
            )
        ]


class FakeProvider:
    """N fake GPUs of a given size, for tests and benchmarks.

    Models "on" a fake GPU compute on the CPU (``torch_device``). Their memory is real
    bookkeeping: ``attach`` counts the tensors of loaded components on a fake device
    until each tensor is garbage-collected, so a model that something still references
    after its eviction shows up as memory that never came back — as it would on a GPU.
    ``allocate``/``release`` move used memory by hand.
    """

    name = "fake"

    def __init__(self, count: int = 2, memory: int = 24 * GIB, name: str = "Fake GPU") -> None:
        self._tracked: dict[int, tuple[str, int]] = {}  # id(tensor) -> (device, bytes)
        self._devices = [
            DeviceInfo(
                id=f"cuda:{i}",
                kind="cuda",
                name=name,
                uuid=f"GPU-fake-{i:04d}",
                physical_index=i,
                memory_total=memory,
                memory_used=0,
                memory_free=memory,
                utilization=0,
            )
            for i in range(count)
        ]

    def devices(self) -> list[DeviceInfo]:
        return list(self._devices)

    def torch_device(self, device_id: str) -> Any:
        import torch

        return torch.device("cpu")

    def attach(self, device_id: str, components: Any) -> None:
        """Count the tensors of ``components`` as living on ``device_id`` (moved there if counted elsewhere)."""
        from arc_fabric_core.runtime.components import component_tensors

        ids = {d.id for d in self._devices}
        for tensor in component_tensors(components):
            key, nbytes = id(tensor), tensor.numel() * tensor.element_size()
            previous = self._tracked.pop(key, None)
            if previous is not None:
                self._move(previous[0], -previous[1])
            else:
                weakref.finalize(tensor, self._forget, key)
            if device_id in ids:
                self._move(device_id, nbytes)
                self._tracked[key] = (device_id, nbytes)

    def _forget(self, key: int) -> None:
        previous = self._tracked.pop(key, None)
        if previous is not None:
            self._move(previous[0], -previous[1])

    def allocate(self, device_id: str, nbytes: int) -> None:
        self._move(device_id, nbytes)

    def release(self, device_id: str, nbytes: int) -> None:
        self._move(device_id, -nbytes)

    def _move(self, device_id: str, nbytes: int) -> None:
        for n, dev in enumerate(self._devices):
            if dev.id == device_id:
                used = dev.memory_used + nbytes
                if not 0 <= used <= dev.memory_total:
                    raise MemoryError(f"{device_id}: {used} bytes used of {dev.memory_total}")
                self._devices[n] = replace(dev, memory_used=used, memory_free=dev.memory_total - used)
                return
        raise KeyError(device_id)


def detect(environ: dict[str, str] | None = None, announce: bool = True) -> DeviceProvider:
    """NVML when it works and shows at least one visible GPU; otherwise the CPU, said once
    (``announce=False``: not said, for a look at the devices before any run uses them)."""
    say = log.warning if announce else log.debug
    try:
        provider = NvmlProvider(environ=environ)
    except InputError:
        raise
    except Exception as exc:  # no library, no driver, a broken install: all mean "no GPU here"
        say("no GPU: NVML unavailable (%s); using the CPU", _reason(exc))
        return CpuProvider(environ=environ)
    if not provider.devices():
        say("no GPU: NVML sees none visible to this process; using the CPU")
        return CpuProvider(environ=environ)
    return provider


# ---------------------------------------------------------------- helpers


def parse_bytes(text: str, field: str) -> int:
    """'12G', '12GiB', '512M', '1000000' -> bytes (binary units)."""
    units = {"": 1, "k": 1024, "m": 1024**2, "g": GIB, "t": 1024**4}
    value = text.strip().lower().removesuffix("ib").removesuffix("b")
    unit = value[-1:] if value[-1:] in units and not value[-1:].isdigit() else ""
    number = value[: len(value) - len(unit)]
    try:
        amount = float(number)
    except ValueError:
        raise InputError(field, f"expected a size such as 16G or 512M, got {text!r}") from None
    if amount <= 0:
        raise InputError(field, f"must be positive, got {text!r}")
    return int(amount * units[unit])


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _bytes_or_none(value: Any) -> int | None:
    try:
        number = int(value)
    except (TypeError, ValueError):
        return None
    # NVML reports "not available" as the largest unsigned long long.
    return None if number >= 2**63 else number


def _reason(exc: Exception) -> str:
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0]


def _meminfo() -> dict[str, int]:
    info = {}
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                key, _, rest = line.partition(":")
                info[key] = int(rest.split()[0]) * 1024
    except OSError:
        pass
    return info


def _physical_memory() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return _meminfo().get("MemTotal", 0)


def _available_memory() -> int:
    info = _meminfo()
    return info.get("MemAvailable", info.get("MemFree", _physical_memory()))


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return f"{line.split(':', 1)[1].strip()} ({os.cpu_count()} threads)"
    except OSError:
        pass
    return f"CPU ({os.cpu_count()} threads)"
