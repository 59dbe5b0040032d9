"""Loading and releasing models leaks nothing: 50 cycles leave the process's memory flat
and no reference to a released model behind."""

from __future__ import annotations

import gc
import os
import weakref

import pytest
import torch

from arc_fabric_core.hookspecs import hookimpl
from arc_fabric_core.model_pool import ModelPool
from arc_fabric_core.models import LatentSpace, ModelSpec, VariantSpec
from arc_fabric_core.params import GenerationParams
from arc_fabric_core.plugins import Plugins

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
    pool = ModelPool(plugins)
    ref = plugins.model("ballast").resolve("default", None)
    cpu = torch.device("cpu")

    def cycle() -> weakref.ref:
        components = pool.get(ref, cpu, "auto")
        assert pool.warm_bytes() == BALLAST
        alive = weakref.ref(components["weights"])
        del components
        pool.release(ref, cpu, "auto")
        return alive

    for _ in range(3):  # allocator warm-up
        cycle()
    gc.collect()
    before = rss()
    released = [cycle() for _ in range(50)]
    gc.collect()
    grown = rss() - before
    assert all(r() is None for r in released), "a released model is still referenced"
    assert pool.warm_bytes() == 0 and pool.loads == 53
    assert grown < 2 * BALLAST, f"RSS grew {grown / 2**20:.0f} MiB over 50 cycles"
