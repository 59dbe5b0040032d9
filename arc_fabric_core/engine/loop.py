"""The denoising loop, whole.

Given a session whose first state is set (fresh noise, a restored checkpoint, an edit's
re-noised source) and the models that run its steps, already bound to their components
and conditioning, the loop does one thing per step: ask the stage model for its output
and let the schedule turn it into the next latents. At a pass boundary the stage model
makes the next pass's first latents.

Everything else attaches as an observer, called after each step in the order given:
an edit's blending, the finite check, checkpointing, events and previews, and the stop
request of a cancel or a pause. The loop itself touches no store, cache or plugin
registry, so what it computes depends on its inputs alone — which is what makes a
resumed session equal an uninterrupted one.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import torch

from arc_fabric_core.contract.schedule import Schedule, StepContext
from arc_fabric_core.engine.state import Session


class StageModel(Protocol):
    """A stage's model bound to its components, conditioning and parameters."""

    def denoise(self, latents: torch.Tensor, step: StepContext) -> torch.Tensor:
        """The model output the schedule consumes at ``step`` (guidance included)."""
        ...

    def enter_pass(self, session: Session, pass_index: int) -> tuple[torch.Tensor, Schedule]:
        """The first latents and the schedule of pass ``pass_index``, from the finished pass before."""
        ...


class StageModels(Protocol):
    def at(self, step: int) -> StageModel:
        """The model of the stage that runs ``step``."""
        ...


@dataclass(frozen=True)
class StepDone:
    """What an observer is told after a step."""

    session: Session
    step: StepContext  # the step just run (its index into the pass, timestep, sigma)
    step_seconds: float
    elapsed_seconds: float
    first_step: int  # where this run started


class Observer(Protocol):
    def after_step(self, done: StepDone) -> bool | None:
        """Called after every step, in order; may change ``done.session.latents`` (a
        blend) or raise (a failed check). True asks the loop to stop here."""
        ...

    def on_stop(self, session: Session) -> None:
        """Called when the loop stops before ``until`` because an observer asked."""
        ...


def denoise(session: Session, models: StageModels, until: int, observers: Sequence[Observer] = ()) -> bool:
    """Run ``session`` from its step up to step ``until``; True when an observer stopped it early."""
    assert session.latents is not None and session.schedule is not None
    started, first = time.perf_counter(), session.step_index
    while session.step_index < until:
        t0 = time.perf_counter()
        model = models.at(session.step_index)
        if session.pass_finished:
            session.latents, session.schedule = model.enter_pass(session, session.pass_index + 1)
            session.pass_index += 1
        step = session.context()
        output = model.denoise(session.latents, step)
        session.latents = session.schedule.step(output, step.index, session.latents, session.generator)
        session.step_index += 1
        now = time.perf_counter()
        done = StepDone(session, step, now - t0, now - started, first)
        stop = False
        for observer in observers:
            stop = bool(observer.after_step(done)) or stop
        if stop and not session.done:
            for observer in observers:
                observer.on_stop(session)
            return True
    return False
