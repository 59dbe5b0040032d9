"""Loading and releasing models leaks nothing: 50 cycles leave the process's memory flat
and no reference to a released model behind."""

from __future__ import annotations

import gc
import os
import weakref

import pytest
import torch

from arc_fabric_core.contract.hookspecs import hookimpl
from arc_fabric_core.contract.models import LatentSpace, ModelSpec, VariantSpec
from arc_fabric_core.contract.params import GenerationParams
from arc_fabric_core.dispatch.plugins import Plugins
from arc_fabric_core.runtime.model_cache import ModelCache

BALLAST = 32 * 2**20  # bytes of "weights" per load: a leak of 50 loads would be 1.6 GiB


def rss() -> int:
    """Resident memory of this process, in bytes."""
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class Ballast:
    """A model whose load allocates (and touches) BALLAST bytes."""

    @hookimpl
    def arc_register_models(self, register):
        register(
            ModelSpec(
                name="ballast",
                description="32 MiB of weights.",
                params=GenerationParams,
                latent_space=LatentSpace(family="none", channels=1, temporal_compression=1, spatial_compression=1),
                variants=(VariantSpec(name="default", description="No weights.", tiny=True),),
            )
        )

    @hookimpl
    def arc_load(self):
        layer = torch.nn.Linear(1, 1, bias=False).requires_grad_(False)
        layer.weight = torch.nn.Parameter(torch.ones(BALLAST // 4 // 1024, 1024), requires_grad=False)  # touched pages
        return {"weights": layer}


@pytest.mark.slow
def test_fifty_load_release_cycles_leave_memory_flat() -> None:
    plugins = Plugins(load_entrypoints=False)
    plugins.register(Ballast(), name="ballast")
    cache = ModelCache(plugins)
    ref = plugins.model("ballast").resolve("default", None)
    cpu = torch.device("cpu")

    def cycle() -> weakref.ref:
        components = cache.get(ref, cpu, "auto")
        assert cache.warm_bytes() == BALLAST
        alive = weakref.ref(components["weights"])
        del components
        cache.release(ref, cpu, "auto")
        return alive

    for _ in range(3):  # allocator warm-up
        cycle()
    gc.collect()
    before = rss()
    released = [cycle() for _ in range(50)]
    gc.collect()
    grown = rss() - before
    assert all(r() is None for r in released), "a released model is still referenced"
    assert cache.warm_bytes() == 0 and cache.loads == 53
    assert grown < 2 * BALLAST, f"RSS grew {grown / 2**20:.0f} MiB over 50 cycles"


class DeviceBallast(Ballast):
    """The ballast on the device the cache places it on."""

    @hookimpl
    def arc_load(self, device):
        return {"weights": torch.ones(BALLAST // 4, device=device)}


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_fifty_load_evict_cycles_leave_gpu_memory_flat() -> None:
    """On a GPU, through NVML: every eviction gives the model's memory back to the device
    (the cache checks the provider's numbers after each), and 50 cycles leave both
    torch's allocator and NVML's count where they started."""
    from arc_fabric_core.runtime.devices import NvmlProvider

    plugins = Plugins(load_entrypoints=False)
    plugins.register(DeviceBallast(), name="ballast")
    provider = NvmlProvider()
    cache = ModelCache(plugins, provider=provider)
    unconfirmed: list[str] = []
    cache.subscribe(lambda e: unconfirmed.append(e.label) if e.kind == "release-unconfirmed" else None)
    ref = plugins.model("ballast").resolve("default", None)

    def nvml_used() -> int:
        return next(d.memory_used for d in provider.devices() if d.id == "cuda:0")

    def cycle() -> None:
        cache.get(ref, "cuda:0")
        assert cache.placement_of(ref) == "cuda:0"
        cache.evict(ref)

    for _ in range(3):  # CUDA context and allocator warm-up
        cycle()
    allocated, used = torch.cuda.memory_allocated(), nvml_used()
    for _ in range(50):
        cycle()
    assert torch.cuda.memory_allocated() == allocated
    assert nvml_used() - used < BALLAST, f"NVML: {(nvml_used() - used) / 2**20:.0f} MiB more in use"
    assert unconfirmed == [] and cache.loads == 53
