"""The step-cache plugin: it owns no model and wraps every model's ``arc_denoise_step``.

With ``params.cache`` set, the transformer's block stack (:mod:`.blocks`) is handed to the
cache's policy (:mod:`.policies`) for the step's transformer calls; with none, the step
runs as it is (a fork with ``cache: None`` turns the cache off for its remaining steps).
The cache's state lives in the step's ``checkpointed`` dict and starts afresh at the first
step of every pass. ``stepcache.ran`` and ``stepcache.skipped`` count the transformer calls
whose blocks ran and those the cache answered, over the whole session.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from arc_fabric_core.contract.errors import InputError
from arc_fabric_core.contract.hookspecs import hookimpl
from arc_fabric_core.contract.schedule import StepContext
from arc_fabric_core.runtime.step_caches import blocks
from arc_fabric_core.runtime.step_caches.policies import PREFIX, policy_for

# Its information lines go to the job log (jobs.log.NARRATING).
log = logging.getLogger("arc_fabric.speed")
RAN = PREFIX + "ran"
SKIPPED = PREFIX + "skipped"
TAG = PREFIX + "tag"  # which cache on which model made the state (a change starts it afresh)
COUNTERS = (RAN, SKIPPED)
TRANSFORMER_NAMES = ("transformer", "transformer_2")
HOLDER_NAMES = ("pipe", "net")


@dataclass(frozen=True)
class CacheInfo:
    """A step cache a plugin implements (``arc_register_caches``): ``name`` is the value of
    ``params.cache.name`` it answers to."""

    name: str
    summary: str


CACHES = (
    CacheInfo("fbc", "first-block cache: skips the other blocks while block 0's residual hardly changes"),
    CacheInfo("magcache", "magnitude-aware cache: reuses the residual while its magnitude ratios stay near 1"),
    CacheInfo("taylorseer", "TaylorSeer: runs every few steps, forecasts the residual in between"),
)


@hookimpl
def arc_register_caches(register: Callable[[CacheInfo], None]) -> None:
    for info in CACHES:
        register(info)


@hookimpl(wrapper=True)
def arc_denoise_step(model: Any, components: Any, step: StepContext, params: Any) -> Any:
    settings = getattr(params, "cache", None)
    if settings is None:
        forget(step.checkpointed)
        return (yield)
    label = getattr(model, "label", str(model))
    stacks = [blocks.install(t, f"cache={settings.name} on {label}") for t in transformers_of(components, label)]
    state = step.checkpointed
    tag = torch.tensor(zlib.crc32(f"{settings.name}|{label}".encode()), dtype=torch.int64)
    if step.index == 0 or TAG not in state or not torch.equal(state[TAG].cpu(), tag):
        forget(state)
        state[TAG] = tag
    controller = blocks.StackController(policy_for(settings, step))
    for stack in stacks:
        blocks.activate(stack, controller)
    try:
        output = yield
    finally:
        for stack in stacks:
            blocks.activate(stack, None)
    count(state, RAN, controller.ran)
    count(state, SKIPPED, controller.skipped)
    if step.index == step.total - 1:
        ran, skipped = counts(state)
        log.info(
            "cache: %s ran the blocks of %d of %d transformer calls so far (%d answered by the cache)",
            settings.name,
            ran,
            ran + skipped,
            skipped,
        )
    return output


def transformers_of(components: Any, label: str) -> list[nn.Module]:
    """The transformers in a model's components (``transformer``, and ``transformer_2``
    where a model has a second one), on the components, on their diffusers pipeline
    (``pipe``) or on their own network (``net``, around a diffusers transformer)."""
    found: list[nn.Module] = []
    for holder in (components, *(getattr(components, name, None) for name in HOLDER_NAMES)):
        if holder is None:
            continue
        for name in TRANSFORMER_NAMES:
            value = holder.get(name) if isinstance(holder, dict) else getattr(holder, name, None)
            if isinstance(value, nn.Module) and all(value is not f for f in found):
                found.append(value)
    if not found:
        raise InputError(
            "cache",
            f"{label}: its components hold no transformer (a 'transformer' module) whose blocks a step "
            "cache could skip; run it without a cache",
        )
    return found


def forget(state: dict[str, torch.Tensor]) -> None:
    """Drop a cache's state (not the session's counters)."""
    for key in [k for k in state if k.startswith(PREFIX) and k not in COUNTERS]:
        del state[key]


def count(state: dict[str, torch.Tensor], key: str, add: int) -> None:
    before = int(state[key].item()) if key in state else 0
    state[key] = torch.tensor(before + add, dtype=torch.int64)


def counts(state: dict[str, torch.Tensor]) -> tuple[int, int]:
    """Transformer calls whose blocks ran, and those a cache answered."""
    return tuple(int(state[k].item()) if k in state else 0 for k in COUNTERS)  # type: ignore[return-value]
