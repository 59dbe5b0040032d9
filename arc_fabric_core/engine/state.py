"""A session in memory: its document plus the live tensors the loop works on.

The loop (:mod:`arc_fabric_core.engine.loop`) advances a :class:`Session`; the
checkpoints capture and restore it; nothing here touches the store, the model cache
or the plugins.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from arc_fabric_core.contract.errors import SessionError
from arc_fabric_core.contract.models import ModelRef
from arc_fabric_core.contract.params import GenerationParams
from arc_fabric_core.contract.schedule import Schedule, StepContext
from arc_fabric_core.store.session import SessionDoc


@dataclass(frozen=True)
class StepEvent:
    """Emitted after every step: what a progress bar, a log or a WebSocket needs."""

    session_id: str
    step: int  # steps done
    total: int
    timestep: float
    step_seconds: float
    elapsed_seconds: float
    # Where this run started: a resume, fork or edit begins past step 0.
    first_step: int = 0
    # The loop's latents after this step (a live tensor: read it in the listener, do not
    # keep or change it) — what live previews are drawn from.
    latents: torch.Tensor | None = field(default=None, repr=False, compare=False)
    # Pixel frames (F, H, W, 3) in [0, 1] that a streaming model decoded at this step (an
    # autoregressive model's finished block); None for most steps and models.
    frames: torch.Tensor | None = field(default=None, repr=False, compare=False)

    @property
    def eta_seconds(self) -> float:
        done = max(self.step - self.first_step, 1)
        return self.elapsed_seconds / done * (self.total - self.step)


Listener = Callable[[StepEvent], None]


@dataclass
class Blend:
    """What a masked edit keeps: the source's clean latents, its noise, and where to edit."""

    x0: torch.Tensor
    noise: torch.Tensor
    mask: torch.Tensor  # bool, (1, 1, F, H, W) in latent coordinates: True = re-denoise

    def apply(self, latents: torch.Tensor, schedule: Schedule, index: int) -> torch.Tensor:
        known = schedule.add_noise(self.x0, self.noise, index)
        return torch.where(self.mask, latents, known)


@dataclass
class Stage:
    """A stage in memory: the model that runs it, its parameters, and where it ends."""

    ref: ModelRef
    params: GenerationParams
    end: int | None = None  # None until a timestep boundary meets the schedule
    # A real variant whose weights are absent, replaced by its tiny stand-in.
    stand_in: bool = False


@dataclass
class Session:
    """A session in memory.

    ``ref`` and ``params`` are stage 0's: the model that draws the first latents and
    makes the schedule. A plain session has one stage running every step.
    """

    doc: SessionDoc
    ref: ModelRef
    params: GenerationParams
    step_index: int = 0
    latents: torch.Tensor | None = None
    conditioning: dict[str, torch.Tensor] | None = None  # stage 0's
    schedule: Schedule | None = None  # the current pass's
    generator: torch.Generator = field(default_factory=torch.Generator)
    # An edit inside a mask: outside it, the source re-noised to each step's level is put back.
    blend: Blend | None = None
    stages: list[Stage] = field(default_factory=list)
    pass_index: int = 0
    # Conditioning of each stage model (by ModelRef.key): stages of one model share it.
    stage_conditioning: dict[tuple[str, str, str], dict[str, torch.Tensor]] = field(default_factory=dict)
    # Where the loop's tensors live: the device of the first model it loaded. Later stage
    # models load there too (a scheduler's history cannot span devices).
    device: torch.device | None = None
    placement: str | None = None  # that device as the model cache names it ("cuda:1", a fake GPU...)
    # What plugins keep between steps (StepContext.state): rebuildable, memory only.
    model_state: dict[str, Any] = field(default_factory=dict)
    # What plugins keep between steps that is checkpointed with the loop (StepContext.checkpointed).
    plugin_state: dict[str, torch.Tensor] = field(default_factory=dict)
    # Its inputs beside text (ModelSpec.inputs) on the CPU: checked ones of a session being
    # made, else read from the store when it first binds (None: not read yet).
    inputs: dict[str, torch.Tensor] | None = None
    # What the model's arc_source_inputs said when the session was planned (memory only):
    # where its inputs came from, and the ground truth to compare its video against.
    source_note: str | None = None
    reference: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if not self.stages:
            self.stages = [Stage(self.ref, self.params, self.doc.total_steps)]

    @property
    def id(self) -> str:
        return self.doc.id

    @property
    def done(self) -> bool:
        return self.step_index >= self.doc.total_steps

    @property
    def passes(self) -> list[int]:
        return self.doc.passes or [self.doc.total_steps]

    def pass_start(self, index: int) -> int:
        return sum(self.passes[:index])

    def pass_of(self, step: int) -> int:
        """The pass that runs ``step`` (the last pass for the final step count)."""
        starts = [self.pass_start(i) for i in range(len(self.passes))]
        return max(0, bisect.bisect_right(starts, min(step, self.doc.total_steps - 1)) - 1)

    def stage_of(self, step: int) -> int:
        """The stage that runs ``step`` (steps past the end: the last stage)."""
        for i, stage in enumerate(self.stages):
            if stage.end is None:
                raise SessionError(f"session {self.id}: stage {i} has no end step yet (the schedule is unknown)")
            if step < stage.end:
                return i
        return len(self.stages) - 1

    def boundaries(self) -> set[int]:
        """Steps where a stage or a pass hands over: always checkpointed."""
        steps = {st.end for st in self.stages[:-1] if st.end is not None}
        return steps | {self.pass_start(i) for i in range(1, len(self.passes))}

    @property
    def pass_finished(self) -> bool:
        """The current pass has run all its steps (the next step starts the next pass)."""
        assert self.schedule is not None
        return self.step_index - self.pass_start(self.pass_index) >= len(self.schedule)

    def context(self) -> StepContext:
        """Where the loop stands, as ``arc_denoise_step`` sees it."""
        schedule = self.schedule
        assert schedule is not None
        index = self.step_index - self.pass_start(self.pass_index)
        sigmas = schedule.sigmas
        return StepContext(
            index=index,
            total=len(schedule),
            timestep=schedule.timesteps[index],
            sigma=float(sigmas[index]) if sigmas is not None else None,
            pass_index=self.pass_index,
            state=self.model_state,
            checkpointed=self.plugin_state,
        )
