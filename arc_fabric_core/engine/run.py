"""One run of a session, and the ways it gets its first state.

A run's first state is a restored checkpoint (a resume, a fork) or, for a session that
has none yet, what the operation that made it says (fresh noise, an edit's re-noised
source, an extension's parent video): :meth:`OperationSpec.start`, given this run.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from arc_fabric_core.engine.binding import Binder, BoundStage, SessionModels
from arc_fabric_core.engine.checkpoints import Checkpointer, apply_state, read_checkpoint
from arc_fabric_core.engine.hybrid import end_steps
from arc_fabric_core.engine.live import LiveStates
from arc_fabric_core.engine.state import Blend, Session
from arc_fabric_core.store.files import CheckpointWriter


@dataclass
class Run:
    """What a run works with: the session, its bound stage models, its writer."""

    session: Session
    binder: Binder
    models: SessionModels
    writer: CheckpointWriter | None
    checkpointer: Checkpointer | None
    live: LiveStates | None = None
    # Set by a start that continued a live session's plugin state (not rebuilt).
    continued: bool = field(default=False)

    @property
    def device(self) -> torch.device:
        return self.session.device or self.binder.device

    def checkpoint(self) -> None:
        """Write the first state now (a fork or a resume starts from it)."""
        if self.checkpointer is not None:
            self.checkpointer.write(self.session)

    def plan_schedule(self, bound: BoundStage, first_pass: int = 0) -> None:
        """Build every pass's schedule once (with ``bound``'s model): record the
        timesteps, place the stage boundaries that wait for them, and keep
        ``first_pass``'s fresh schedule."""
        session = self.session
        schedules = [bound.schedule(session, p) for p in range(len(session.passes))]
        timesteps = [float(t) for sch in schedules for t in sch.timesteps]
        sigmas = [float(s) for sch in schedules if sch.sigmas is not None for s in sch.sigmas[: len(sch)]]
        session.schedule, session.pass_index = schedules[first_pass], first_pass
        doc = session.doc
        ends = None
        if doc.stages and any(st.end is None for st in session.stages):
            bounds = [st.boundary for st in doc.stages[:-1] if st.boundary is not None]
            ends = end_steps(doc.boundary_unit, bounds, doc.total_steps, timesteps, sigmas)
            assert ends is not None
            for stage, end in zip(session.stages, ends, strict=True):
                stage.end = end

        def write() -> None:
            doc.timesteps = timesteps
            doc.sigmas = sigmas
            if ends is not None:
                for info, end in zip(doc.stages, ends, strict=True):
                    info.end_step = end

        assert self.writer is not None
        self.writer.submit(write)

    def restore(self, at: int | None = None) -> None:
        """The loop state of the newest checkpoint whose checksum holds (or the one at
        step ``at``). The plugins' rebuildable state is rebuilt — unless this session is
        live here at exactly that step with the same warm model, when it goes on as it was."""
        session = self.session
        doc = session.doc
        tensors, metadata = read_checkpoint(self.binder.store, doc, at)
        step = int(metadata["step"])
        # The model of the stage at this step rebuilds the schedule: a resume after a
        # hand-off never loads the models of finished stages.
        stage_index = session.stage_of(min(step, doc.total_steps - 1))
        bound = self.models.stage(stage_index)
        kept = self.live.take(session.id, step, bound) if self.live is not None else None
        session.model_state.clear()
        if kept is not None:
            session.model_state.update(kept)
            self.continued = True
        schedule = bound.schedule(session, int(metadata.get("pass", "0")))
        apply_state(session, tensors, metadata, schedule, bound.ref.label, self.device)

    def load_edit(self) -> dict[str, torch.Tensor]:
        """An edit's tensors (the source's clean latents, its noise, the latent mask);
        with a mask, the blend every step of its run (and of its forks) applies."""
        session = self.session
        info = session.doc.edit
        assert info is not None and info.tensors is not None
        tensors, _ = self.binder.store.read_tensors(session.id, info.tensors)
        if "mask" in tensors:
            device = self.device
            session.blend = Blend(
                x0=tensors["x0"].to(device), noise=tensors["noise"].to(device), mask=tensors["mask"].to(device)
            )
        return tensors
