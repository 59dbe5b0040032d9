"""What attaches to the loop: edit blending, the finite check, events, stop requests.

Checkpointing is an observer too (:class:`arc_fabric_core.engine.checkpoints.Checkpointer`).
The order a run attaches them in (:meth:`Engine.run`): blend, finite check, checkpoint,
events, stop — the blend first because every later one must see the blended latents,
the finite check before the checkpoint so that a NaN is never written.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from arc_fabric_core.contract.errors import SessionError
from arc_fabric_core.contract.schedule import DECODED_FRAMES
from arc_fabric_core.engine.loop import StepDone
from arc_fabric_core.engine.state import Listener, Session, StepEvent
from arc_fabric_core.store.files import CheckpointWriter


class Observing:
    """An observer that needs nothing when the loop stops early."""

    def after_step(self, done: StepDone) -> bool | None:
        return None

    def on_stop(self, session: Session) -> None:
        return None


class EditBlend(Observing):
    """Outside a masked edit's region, put the source back at this step's noise level."""

    def after_step(self, done: StepDone) -> None:
        session = done.session
        if session.blend is not None:
            assert session.schedule is not None and session.latents is not None
            session.latents = session.blend.apply(session.latents, session.schedule, done.step.index + 1)


class FiniteCheck(Observing):
    """Stop a run whose latents turned NaN or infinite: nothing of that step is
    checkpointed, so the newest checkpoint stays the last finite state."""

    def __init__(self, writer: CheckpointWriter) -> None:
        self.writer = writer

    def after_step(self, done: StepDone) -> None:
        session = done.session
        assert session.latents is not None
        if bool(torch.isfinite(session.latents).all()):
            return
        self.writer.flush()  # the checkpoints queued before this step are on disk: name the newest
        doc = session.doc
        last = doc.checkpoints[-1].step if doc.checkpoints else None
        where = (
            f"its newest checkpoint (step {last}) is the last finite state: resume from it, or fork it with "
            "other parameters"
            if last is not None
            else "it has no checkpoint to resume from"
        )
        raise SessionError(
            f"session {doc.id}: the latents became non-finite (NaN or inf) at step {session.step_index}; {where}"
        )


class Events(Observing):
    """A :class:`StepEvent` to every listener after every step."""

    def __init__(self, listeners: Sequence[Listener]) -> None:
        self.listeners = list(listeners)

    def after_step(self, done: StepDone) -> None:
        session = done.session
        event = StepEvent(
            session_id=session.id,
            step=session.step_index,
            total=session.doc.total_steps,
            timestep=float(done.step.timestep),
            step_seconds=done.step_seconds,
            elapsed_seconds=done.elapsed_seconds,
            first_step=done.first_step,
            latents=session.latents,
            frames=session.model_state.pop(DECODED_FRAMES, None),
        )
        for listener in self.listeners:
            listener(event)


class StopWhen(Observing):
    """Pause the session when ``stop()`` says so (how a queued job is cancelled mid-run)."""

    def __init__(self, stop: Callable[[], bool]) -> None:
        self.stop = stop

    def after_step(self, done: StepDone) -> bool:
        return not done.session.done and self.stop()
