"""What a session gives back: its final latents, the clean estimate at a checkpoint, and
frames decoded by the model of the stage that made them."""

from __future__ import annotations

import logging
import threading

import torch

from arc_fabric_core.contract.errors import InputError, SessionError, brief
from arc_fabric_core.dispatch import hook_results
from arc_fabric_core.engine.binding import Binder
from arc_fabric_core.engine.run import Run
from arc_fabric_core.engine.state import Session
from arc_fabric_core.store.session import LATENTS_KEY, SessionStatus

log = logging.getLogger("arc_fabric")


class Results:
    def __init__(self, binder: Binder) -> None:
        self.binder, self.store = binder, binder.store
        # One decode at a time per loaded model: a video VAE keeps its causal feature cache
        # on the module (diffusers' Wan VAE does), so two decodes at once mix their frames.
        self._decode_locks: dict[int, threading.Lock] = {}
        self._decode_locks_guard = threading.Lock()

    def clean_estimate(self, session: Session, step: int | None = None) -> torch.Tensor:
        """The clean video a session is heading for at its checkpoint at ``step`` (default:
        its last checkpoint).

        One model call: x0 = x_t - sigma_t * v for flow-matching schedules. At the end of
        a pass (a multi-scale model's low-resolution result) the latents are clean already.
        """
        session_id = session.id
        if not session.doc.checkpoints:
            raise SessionError(f"session {session_id} has no checkpoint yet")
        if step is not None and not any(c.step == step for c in session.doc.checkpoints):
            have = ", ".join(str(c.step) for c in session.doc.checkpoints)
            raise InputError("step", f"session {session_id} has no checkpoint at step {step} (it has: {have})")
        run = Run(session, self.binder, self.binder.models(session, None), None, None)
        with torch.no_grad():
            run.restore(at=step)
            schedule = session.schedule
            assert schedule is not None and session.latents is not None
            index = session.step_index - session.pass_start(session.pass_index)
            if session.done or index >= len(schedule):
                return session.latents
            if not schedule.is_flow:
                raise SessionError(
                    f"session {session_id}: a clean estimate needs a flow-matching schedule; finish the session first"
                )
            output = run.models.at(session.step_index).denoise(session.latents, session.context())
            return schedule.predict_x0(output, index, session.latents)

    def final_latents(self, session_id: str) -> torch.Tensor:
        """The finished session's latents; its last checkpoint stands in if the file is corrupt."""
        doc = self.store.load_doc(session_id)
        if doc.final is None:
            raise SessionError(f"session {session_id} is not finished ({doc.step_index}/{doc.total_steps} steps)")
        try:
            tensors, _ = self.store.read_tensors(session_id, doc.final)
            return tensors[LATENTS_KEY]
        except SessionError as exc:
            last = next((c for c in doc.checkpoints if c.step == doc.total_steps), None)
            if last is None:
                raise
            log.warning("%s; using the checkpoint of the last step instead", exc)
            tensors, _ = self.store.read_tensors(session_id, last)
            return tensors["latents"]

    def decode(self, session: Session, latents: torch.Tensor | None = None, step: int | None = None) -> torch.Tensor:
        """Decode the session's latents (or ``latents``, reached at ``step``) to (F, H, W, 3)
        frames in [0, 1], with the model of the stage that made them.

        A plugin whose decode breaks its contract fails here, in one line; if it was
        decoding the final video, the session is marked failed (its latents stay: decode
        it again once the plugin is fixed)."""
        final = latents is None or step == session.doc.total_steps
        latents = latents if latents is not None else session.latents
        if latents is None:
            latents = self.final_latents(session.id)
        made_at = (step if step is not None else session.doc.total_steps) - 1
        try:
            stage = session.stages[session.stage_of(max(made_at, 0))]
        except SessionError:
            stage = session.stages[0]
        components = self.binder.load(stage.ref, session.placement)
        device = self.binder.cache.device_of(stage.ref, self.binder.dtype)
        with self._decode_locks_guard:
            decoding = self._decode_locks.setdefault(id(components), threading.Lock())
        with decoding, torch.no_grad():
            frames = self.binder.hook("arc_decode", stage.ref)(
                model=stage.ref, components=components, latents=latents.to(device), params=stage.params
            )
        p = session.params
        try:
            hook_results.check_frames(
                self.binder.plugin_name(stage.ref), frames, (p.num_frames, p.height, p.width) if final else None
            )
        except hook_results.PluginResultError as exc:
            if final:
                self._mark_failed(session, f"the video could not be decoded: {exc}")
            raise
        return frames.detach().to("cpu", torch.float32)

    def _mark_failed(self, session: Session, error: str) -> None:
        """Record that a finished session's video could not be made (it is not completed)."""
        error = brief(error)
        self.store.set_status(session.id, SessionStatus.FAILED, error)
        session.doc.status, session.doc.error = SessionStatus.FAILED, error
