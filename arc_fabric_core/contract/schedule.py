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

    @property
    def is_flow(self) -> bool:
        """Flow matching: x_t = (1 - sigma) x0 + sigma noise, and the model predicts noise - x0."""
        config = getattr(self.scheduler, "config", {})
        return self.sigmas is not None and (
            type(self.scheduler).__name__.startswith("FlowMatch")
            or config.get("prediction_type") == "flow_prediction"
            or bool(config.get("use_flow_sigmas"))
        )

    def start_at(self, index: int) -> None:
        """Make a fresh scheduler begin at step ``index`` (an edit re-denoises from there)."""
        if hasattr(self.scheduler, "set_begin_index"):
            self.scheduler.set_begin_index(index)

    def add_noise(self, x0: torch.Tensor, noise: torch.Tensor, index: int) -> torch.Tensor:
        """``x0`` noised to the level of step ``index`` (``index == len(self)`` gives ``x0``)."""
        if self.is_flow:
            assert self.sigmas is not None
            # The arithmetic of diffusers' UniPC add_noise for flow sigmas, so edits match its pipelines.
            sigma = self.sigmas[index].to(x0.device, x0.dtype)
            return (1 - sigma) * x0 + sigma * noise
        if index >= len(self):
            return x0
        return self.scheduler.add_noise(x0, noise, self.timesteps[index : index + 1])

    def predict_x0(self, model_output: torch.Tensor, index: int, latents: torch.Tensor) -> torch.Tensor:
        """The clean video the model sees in ``latents`` at step ``index`` (flow schedules)."""
        if not self.is_flow:
            raise ValueError(f"{type(self.scheduler).__name__}: clean estimates need a flow-matching schedule")
        assert self.sigmas is not None
        sigma = self.sigmas[index].to(latents.device, latents.dtype)
        return latents - sigma * model_output.to(latents.dtype)


@dataclass(frozen=True)
class StepContext:
    """Where the loop stands when it calls ``arc_denoise_step``."""

    index: int  # into this pass's schedule
    total: int  # steps of this pass
    timestep: torch.Tensor
    sigma: float | None
    pass_index: int = 0
    # Rebuildable state: what a plugin keeps between the steps of one session and can
    # remake deterministically from the latents (an autoregressive model's KV cache). Empty
    # when the session starts and after a restore from a checkpoint, unless the session is
    # live (the same warm model ran it up to here in this process: then it is what that run
    # left, e.g. an extension continues the parent's KV cache). Never checkpointed. A value
    # with ``park()`` is parked (to CPU memory) when the session stops running. A model that
    # decodes as it goes puts the pixel frames made at this step under DECODED_FRAMES: the
    # step's event carries them.
    state: dict[str, Any] = field(default_factory=dict)
    # Checkpointable state: tensors a plugin keeps between steps that cannot be remade from
    # the latents (a step cache's residual). Captured with every checkpoint, restored on
    # resume, shared by a fork at that step: a resume with it stays exact. Name keys after
    # the plugin ("mycache.residual"); values are tensors (any device; checkpointed on CPU).
    checkpointed: dict[str, torch.Tensor] = field(default_factory=dict)


DECODED_FRAMES = "arc.decoded_frames"
