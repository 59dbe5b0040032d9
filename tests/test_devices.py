"""Device inventory: NVML (through a stand-in driver), the CPU fallback, the fake provider."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from types import SimpleNamespace

import pytest

from arc_fabric_core.contract.errors import InputError
from arc_fabric_core.runtime.devices import (
    GIB,
    CpuProvider,
    FakeProvider,
    NvmlProvider,
    detect,
    parse_bytes,
    visible_gpus,
)

UUIDS = ["GPU-aaaa-0000", "GPU-bbbb-1111", "GPU-cccc-2222"]


@pytest.mark.parametrize(
    ("visible", "count", "expected"),
    [
        (None, None, [0, 1, 2]),
        ("2,0", None, [2, 0]),  # torch's cuda:0 is physical GPU 2
        ("GPU-cccc", None, [2]),  # a UUID prefix
        ("bbbb-1111,0", None, [1, 0]),  # a UUID without its GPU- prefix
        ("1,7,2", None, [1]),  # CUDA stops at the first entry naming no GPU
        ("1,1", None, [1]),
        ("", None, []),
        ("-1", None, []),
        (None, "2", [0, 1]),
        ("2,1,0", "1", [2]),
        (None, "0", []),
    ],
)
def test_visible_gpus_follow_cuda_rules(visible: str | None, count: str | None, expected: list[int]) -> None:
    assert visible_gpus(UUIDS, visible, count) == expected


def test_bad_gpu_count_is_a_clear_error() -> None:
    with pytest.raises(InputError, match="ARC_GPU_COUNT"):
        visible_gpus(UUIDS, None, "two")


class StandInNvml:
    """Just enough of pynvml's surface, with three 80 GiB boards."""

    class NVMLError(Exception):
        pass

    def __init__(self, fail_init: bool = False) -> None:
        self.fail_init = fail_init

    def nvmlInit(self) -> None:
        if self.fail_init:
            raise self.NVMLError("Driver Not Loaded")

    def nvmlDeviceGetCount(self) -> int:
        return len(UUIDS)

    def nvmlDeviceGetHandleByIndex(self, i: int) -> int:
        return i

    def nvmlDeviceGetUUID(self, h: int) -> bytes:
        return UUIDS[h].encode()  # older bindings return bytes

    def nvmlDeviceGetName(self, h: int) -> str:
        return f"NVIDIA Board {h}"

    def nvmlDeviceGetMemoryInfo(self, h: int) -> SimpleNamespace:
        used = (h + 1) * GIB
        return SimpleNamespace(total=80 * GIB, used=used, free=80 * GIB - used)

    def nvmlDeviceGetUtilizationRates(self, h: int) -> SimpleNamespace:
        if h == 1:
            raise self.NVMLError("Not Supported")
        return SimpleNamespace(gpu=10 * h, memory=0)

    def nvmlDeviceGetComputeRunningProcesses(self, h: int) -> list[SimpleNamespace]:
        return [SimpleNamespace(pid=100 + h, usedGpuMemory=GIB), SimpleNamespace(pid=7, usedGpuMemory=2**64 - 1)]


def test_nvml_inventory_is_mapped_by_uuid_to_torch_indices() -> None:
    provider = NvmlProvider(StandInNvml(), environ={"CUDA_VISIBLE_DEVICES": "2,1"})
    first, second = provider.devices()
    assert (first.id, first.uuid, first.physical_index) == ("cuda:0", "GPU-cccc-2222", 2)
    assert (second.id, second.uuid, second.physical_index) == ("cuda:1", "GPU-bbbb-1111", 1)
    assert first.name == "NVIDIA Board 2" and first.memory_total == 80 * GIB
    assert first.memory_used == 3 * GIB and first.memory_free == 77 * GIB
    assert first.utilization == 20 and second.utilization is None  # unsupported is None, not a crash
    assert [(p.pid, p.used_bytes) for p in first.processes] == [(102, GIB), (7, None)]


def test_failing_nvml_means_the_cpu_with_one_log_line(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import arc_fabric_core.runtime.devices as devices

    monkeypatch.setitem(sys.modules, "pynvml", StandInNvml(fail_init=True))
    with caplog.at_level(logging.INFO, logger="arc_fabric"):
        provider = devices.detect(environ={})
    assert provider.name == "cpu"
    assert [r.getMessage() for r in caplog.records] == ["no GPU: NVML unavailable (Driver Not Loaded); using the CPU"]


def test_no_visible_gpu_means_the_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", StandInNvml())
    assert detect(environ={"CUDA_VISIBLE_DEVICES": ""}).name == "cpu"
    assert detect(environ={"ARC_GPU_COUNT": "2"}).name == "nvml"


def test_cpu_device_has_a_ram_budget() -> None:
    (cpu,) = CpuProvider(environ={"ARC_CPU_MEMORY": "2G"}).devices()
    assert cpu.id == "cpu" and cpu.memory_total == 2 * GIB
    assert 0 <= cpu.memory_free <= 2 * GIB and cpu.memory_used + cpu.memory_free == 2 * GIB
    with pytest.raises(InputError, match="ARC_CPU_MEMORY"):
        CpuProvider(environ={"ARC_CPU_MEMORY": "lots"})


@pytest.mark.parametrize(
    ("text", "value"), [("16G", 16 * GIB), ("512MiB", 512 * 1024**2), ("1.5g", 3 * GIB // 2), ("4096", 4096)]
)
def test_parse_bytes(text: str, value: int) -> None:
    assert parse_bytes(text, "size") == value


def test_fake_provider_tracks_memory() -> None:
    fake = FakeProvider(count=2, memory=10 * GIB)
    fake.allocate("cuda:1", 4 * GIB)
    assert [d.memory_free for d in fake.devices()] == [10 * GIB, 6 * GIB]
    fake.release("cuda:1", 4 * GIB)
    assert fake.devices()[1].memory_used == 0
    with pytest.raises(MemoryError):
        fake.allocate("cuda:0", 11 * GIB)


def test_devices_command_prints_the_inventory() -> None:
    res = subprocess.run(
        [sys.executable, "-m", "arc_fabric_core", "devices"], capture_output=True, text=True, timeout=120
    )
    assert res.returncode == 0, res.stderr
    inventory = json.loads(res.stdout)
    assert inventory["provider"] in ("cpu", "nvml") and inventory["devices"]
    device = inventory["devices"][0]
    assert device["memory_total"] >= device["memory_free"] > 0
    if inventory["provider"] == "cpu":
        assert "using the CPU" in res.stderr and "Traceback" not in res.stderr
