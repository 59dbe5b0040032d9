"""When a step cache skips the block stack, and what it puts in its place.

Every policy keeps its state between steps in the step's ``checkpointed`` dict (keys
``stepcache.<cache>.c<call>.<what>``: tensors, scalars as 0-d float64/int64 tensors), one
set per transformer call of the step (cond and uncond apart), and decides from that state
and the call's inputs alone: a resume or a fork that restores the state decides the same.
Residuals are kept in the hidden states' dtype, on their device.
"""

from __future__ import annotations

import abc
import math
from typing import Any

import torch

from arc_fabric_core.contract.schedule import StepContext

PREFIX = "stepcache."


class Policy(abc.ABC):
    """A step cache at one denoising step (a :class:`~arc_fabric_core.runtime.step_caches.blocks.Decider`)."""

    name = ""

    def __init__(self, settings: Any, step: StepContext) -> None:
        self.settings = settings
        self.step = step
        self.state = step.checkpointed

    # -- state

    def key(self, call: int, what: str) -> str:
        return f"{PREFIX}{self.name}.c{call}.{what}"

    def get(self, call: int, what: str, like: torch.Tensor | None = None) -> torch.Tensor | None:
        value = self.state.get(self.key(call, what))
        if value is not None and like is not None:
            value = value.to(like.device, like.dtype)
        return value

    def put(self, call: int, what: str, value: torch.Tensor) -> None:
        self.state[self.key(call, what)] = value.detach()

    def number(self, call: int, what: str, default: float) -> float:
        value = self.state.get(self.key(call, what))
        return default if value is None else float(value.item())

    def put_float(self, call: int, what: str, value: float) -> None:
        self.state[self.key(call, what)] = torch.tensor(value, dtype=torch.float64)

    def put_int(self, call: int, what: str, value: int) -> None:
        self.state[self.key(call, what)] = torch.tensor(value, dtype=torch.int64)

    # -- the Decider protocol (blocks.py)

    def before(self, call: int, h0: torch.Tensor) -> bool | None:
        return False

    def after_first(self, call: int, h0: torch.Tensor, first: torch.Tensor) -> bool:
        return False

    @abc.abstractmethod
    def skipped(self, call: int, h0: torch.Tensor, first: torch.Tensor | None) -> torch.Tensor:
        """The stack's output in place of the blocks not run."""

    def computed(self, call: int, h0: torch.Tensor, first: torch.Tensor, out: torch.Tensor) -> None:
        return None  # a policy that keeps nothing from a full step


def _relative_change(now: torch.Tensor, before: torch.Tensor) -> float:
    """Mean absolute change of ``now`` from ``before``, relative to ``before``'s mean magnitude."""
    scale = before.float().abs().mean()
    change = (now.float() - before.float()).abs().mean()
    return float(change / scale) if float(scale) > 0 else math.inf


class FirstBlockCachePolicy(Policy):
    """First-block cache: block 0 always runs; when its residual (its output minus its
    input) changed by less than ``threshold`` (mean absolute change relative to the old
    one's mean magnitude) since the last step that ran every block, the other blocks are
    skipped and that step's residual of theirs (last block's output minus block 0's) is
    added to block 0's output. The first ``warmup`` steps of each pass run every block."""

    name = "fbc"

    def before(self, call: int, h0: torch.Tensor) -> bool | None:
        return False if self.step.index < self.settings.warmup else None

    def after_first(self, call: int, h0: torch.Tensor, first: torch.Tensor) -> bool:
        before, tail = self.get(call, "first", first), self.get(call, "tail", first)
        if before is None or tail is None or before.shape != first.shape:
            return False
        return _relative_change(first - h0, before) < self.settings.threshold

    def skipped(self, call: int, h0: torch.Tensor, first: torch.Tensor | None) -> torch.Tensor:
        assert first is not None
        tail = self.get(call, "tail", first)
        assert tail is not None
        return first + tail

    def computed(self, call: int, h0: torch.Tensor, first: torch.Tensor, out: torch.Tensor) -> None:
        self.put(call, "first", first - h0)
        self.put(call, "tail", out - first)


class MagCachePolicy(Policy):
    """Magnitude-aware cache: the stack's residual (last block's output minus the head
    input) changes in magnitude by a ratio per step that is close to 1 for most steps. A
    step after the first ``retention`` share of the pass's steps is skipped, adding the
    last computed residual to its head input, while the error accumulated since the last
    computed step (the sum of ``|1 - product of the ratios|``) stays at most ``threshold``
    and at most ``max_skips`` steps in a row are skipped.

    The ratios: ``mag_ratios`` (one per step of a calibration run, picked nearest to each
    of this pass's steps) when given; else estimated online as ``|r_t| / |r_{t-1}|`` (L2
    norms) between the last two steps computed one after the other, and 1.0 until two
    such steps have run (then only ``max_skips`` bounds the skipping).
    """

    name = "magcache"

    def _ratio(self, call: int) -> float:
        ratios = self.settings.mag_ratios
        if ratios:
            total, index = self.step.total, self.step.index
            at = round(index * (len(ratios) - 1) / (total - 1)) if total > 1 else 0
            return float(ratios[at])
        return self.number(call, "ratio", 1.0)

    def before(self, call: int, h0: torch.Tensor) -> bool | None:
        residual = self.get(call, "residual", h0)
        if residual is None or residual.shape != h0.shape:
            return False
        if self.step.index < self.settings.retention * self.step.total:
            return False
        product = self.number(call, "product", 1.0) * self._ratio(call)
        error = self.number(call, "error", 0.0) + abs(1.0 - product)
        skips = int(self.number(call, "skips", 0)) + 1
        if error <= self.settings.threshold and skips <= self.settings.max_skips:
            self.put_float(call, "product", product)
            self.put_float(call, "error", error)
            self.put_int(call, "skips", skips)
            return True
        return False

    def skipped(self, call: int, h0: torch.Tensor, first: torch.Tensor | None) -> torch.Tensor:
        residual = self.get(call, "residual", h0)
        assert residual is not None
        return h0 + residual

    def computed(self, call: int, h0: torch.Tensor, first: torch.Tensor, out: torch.Tensor) -> None:
        residual = out - h0
        norm = float(residual.float().norm())
        last = int(self.number(call, "last", -2))
        before = self.number(call, "norm", 0.0)
        if last == self.step.index - 1 and before > 0:
            self.put_float(call, "ratio", norm / before)
        self.put(call, "residual", residual)
        self.put_float(call, "norm", norm)
        self.put_int(call, "last", self.step.index)
        self.put_float(call, "product", 1.0)
        self.put_float(call, "error", 0.0)
        self.put_int(call, "skips", 0)


class TaylorSeerPolicy(Policy):
    """TaylorSeer: the stack runs at the first ``warmup`` steps of each pass, at its last
    ``cooldown`` steps, and whenever ``interval`` steps have passed since it last ran; in
    between, its residual (last block's output minus the head input) is forecast by a
    Taylor expansion of order ``order`` around the last step that ran, the derivatives
    estimated by finite differences over the steps that ran (in units of steps)."""

    name = "taylorseer"

    def _factors(self, call: int, like: torch.Tensor) -> list[torch.Tensor]:
        factors = []
        for k in range(self.settings.order + 1):
            factor = self.get(call, f"d{k}", like)
            if factor is None or factor.shape != like.shape:
                break
            factors.append(factor)
        return factors

    def before(self, call: int, h0: torch.Tensor) -> bool | None:
        index, total = self.step.index, self.step.total
        if index < self.settings.warmup or index >= total - self.settings.cooldown:
            return False
        last = self.get(call, "last")
        if last is None or not self._factors(call, h0):
            return False
        return index - int(last.item()) < self.settings.interval

    def skipped(self, call: int, h0: torch.Tensor, first: torch.Tensor | None) -> torch.Tensor:
        last = self.get(call, "last")
        assert last is not None
        distance = self.step.index - int(last.item())
        forecast = torch.zeros_like(h0)
        for k, factor in enumerate(self._factors(call, h0)):
            forecast = forecast + factor * (distance**k / math.factorial(k))
        return h0 + forecast

    def computed(self, call: int, h0: torch.Tensor, first: torch.Tensor, out: torch.Tensor) -> None:
        residual = out - h0
        last = self.get(call, "last")
        old = self._factors(call, residual) if last is not None else []
        distance = self.step.index - int(last.item()) if last is not None else 0
        new = [residual]
        for k in range(1, self.settings.order + 1):
            if k > len(old) or distance <= 0:
                break
            new.append((new[k - 1] - old[k - 1]) / distance)
        for k in range(self.settings.order + 1):
            key = self.key(call, f"d{k}")
            if k < len(new):
                self.put(call, f"d{k}", new[k])
            else:
                self.state.pop(key, None)
        self.put_int(call, "last", self.step.index)


POLICIES: dict[str, type[Policy]] = {cls.name: cls for cls in (FirstBlockCachePolicy, MagCachePolicy, TaylorSeerPolicy)}


def policy_for(settings: Any, step: StepContext) -> Policy:
    return POLICIES[settings.name](settings, step)
