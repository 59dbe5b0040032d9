"""A schedule is data: the timesteps, and the scheduler that turns model outputs into latents."""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any

import torch


@dataclass
class Schedule:
    """What ``arc_schedule`` returns.

    ``scheduler`` is a diffusers-style scheduler (``step(model_output, t, sample,
    return_dict=False)``), fresh and owned by one session: its internals are session
    state (UniPC keeps a history of model outputs) and are checkpointed with it.
    """

    timesteps: torch.Tensor
    scheduler: Any
    sigmas: torch.Tensor | None = None
    _step_takes_generator: bool | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.timesteps)

    def step(
        self, model_output: torch.Tensor, index: int, latents: torch.Tensor, generator: torch.Generator
    ) -> torch.Tensor:
        """Advance ``latents`` by one step; stochastic schedulers draw from ``generator``."""
        if self._step_takes_generator is None:
            self._step_takes_generator = "generator" in inspect.signature(self.scheduler.step).parameters
        kwargs = {"generator": generator} if self._step_takes_generator else {}
        return self.scheduler.step(model_output, self.timesteps[index], latents, return_dict=False, **kwargs)[0]


@dataclass(frozen=True)
class StepContext:
    """Where the loop stands when it calls ``arc_denoise_step``."""

    index: int
    total: int
    timestep: torch.Tensor
    sigma: float | None
