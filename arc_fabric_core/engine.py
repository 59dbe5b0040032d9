"""The engine owns the denoising loop; plugins own one step.

Because the loop lives here, every model gets the same session behaviour for free:
checkpoints, resume, per-step events, and (later) fork, edit and hand-off.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import torch

from arc_fabric_core.edit_mask import EditMask, latent_mask
from arc_fabric_core.errors import InputError, SessionError
from arc_fabric_core.model_pool import ModelPool, check_dtype, resolve_device
from arc_fabric_core.models import ModelRef
from arc_fabric_core.params import GenerationParams
from arc_fabric_core.plugins import STAGE_HOOKS, Plugins, get_plugins
from arc_fabric_core.schedule import Schedule, StepContext
from arc_fabric_core.scheduler_state import capture, restore
from arc_fabric_core.session import (
    LATENTS_KEY,
    CheckpointRecord,
    EditInfo,
    ModelInfo,
    Operation,
    SessionDoc,
    SessionStatus,
)
from arc_fabric_core.store import CheckpointWriter, SessionStore, add_checkpoint, checkpoint_name

CONDITIONING_FILE = "conditioning.safetensors"
LATENTS_FILE = "latents.safetensors"
EDIT_FILE = "edit.safetensors"
# Overrides that leave the text conditioning as it is: a fork changing only these shares it.
NON_CONDITIONING = frozenset({"seed", "fps"})

log = logging.getLogger("arc_fabric")


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
class Session:
    """A session in memory: its document plus the live tensors the loop works on."""

    doc: SessionDoc
    ref: ModelRef
    params: GenerationParams
    step_index: int = 0
    latents: torch.Tensor | None = None
    conditioning: dict[str, torch.Tensor] | None = None
    schedule: Schedule | None = None
    generator: torch.Generator = field(default_factory=torch.Generator)
    # An edit inside a mask: outside it, the source re-noised to each step's level is put back.
    blend: Blend | None = None

    @property
    def id(self) -> str:
        return self.doc.id

    @property
    def done(self) -> bool:
        return self.step_index >= self.doc.total_steps


class Engine:
    """Creates, runs, resumes, forks and edits sessions.

    Checkpoint policy: ``checkpoint_every`` k steps (the first and last step always
    are; 0 = none at all: a batch run that cannot be resumed or forked);
    ``checkpoint_keep`` the newest n (0 = all, the default: any step can be forked);
    ``checkpoint_keep_steps`` are kept whatever n says.
    """

    def __init__(
        self,
        store: SessionStore,
        plugins: Plugins | None = None,
        device: str | torch.device = "auto",
        dtype: str = "auto",
        pool: ModelPool | None = None,
        checkpoint_every: int = 1,
        checkpoint_keep: int = 0,
        checkpoint_keep_steps: Iterable[int] = (),
    ) -> None:
        if checkpoint_every < 0:
            raise InputError("checkpoint_every", f"must be >= 1 (or 0: no checkpoints at all), got {checkpoint_every}")
        if checkpoint_keep < 0:
            raise InputError("checkpoint_keep", f"must be >= 0 (0 keeps all), got {checkpoint_keep}")
        keep_steps = frozenset(int(s) for s in checkpoint_keep_steps)
        if any(s < 0 for s in keep_steps):
            raise InputError("checkpoint_keep_steps", f"steps must be >= 0, got {sorted(keep_steps)}")
        self.store = store
        self.plugins = plugins or get_plugins()
        self.device = resolve_device(device)
        self.dtype = check_dtype(dtype)
        self.pool = pool or ModelPool(self.plugins)
        self.checkpoint_every = checkpoint_every
        self.checkpoint_keep = checkpoint_keep
        self.checkpoint_keep_steps = keep_steps

    # ------------------------------------------------------------ create / open

    def resolve(self, model: str, variant: str | None = "auto", weights: str | None = None) -> ModelRef:
        return self.plugins.model(model).resolve(variant, weights)

    def create(
        self, model: str | ModelRef, params: dict[str, Any], variant: str | None = "auto", weights: str | None = None
    ) -> Session:
        """Validate everything and write the session's document. No model loads here."""
        ref = model if isinstance(model, ModelRef) else self.resolve(model, variant, weights)
        checked = ref.params(params)
        self._check_stages(ref)
        doc = SessionDoc(
            model=ModelInfo(
                name=ref.spec.name, variant=ref.variant.name, weights=str(ref.weights) if ref.weights else None
            ),
            params=checked.model_dump(),
            device=str(self.device),
            dtype=self.dtype,
            total_steps=checked.steps,
        )
        self.store.save_doc(doc)
        return Session(doc=doc, ref=ref, params=checked)

    def _check_stages(self, ref: ModelRef) -> None:
        for stage in STAGE_HOOKS:
            self.plugins.stage(stage, ref.spec.name)  # a plugin missing a stage fails here, not mid-run

    def open(self, session_id: str) -> Session:
        """Load a session from the store; its tensors are restored when it next runs."""
        doc = self.store.load_doc(session_id)
        ref = self.resolve(doc.model.name, doc.model.variant, doc.model.weights)
        params = ref.params(doc.params)
        session = Session(doc=doc, ref=ref, params=params)
        session.step_index = doc.checkpoints[-1].step if doc.checkpoints else 0
        return session

    # ------------------------------------------------------------ fork and edit

    def _with_overrides(
        self, parent: SessionDoc, overrides: dict[str, Any] | None
    ) -> tuple[ModelRef, Any, dict[str, Any]]:
        """The parent's model, its params with ``overrides``, and the overrides as validated.

        Refuses a change to a field that fixes the schedule or the latent shape.
        """
        ref = self.resolve(parent.model.name, parent.model.variant, parent.model.weights)
        params = ref.params({**parent.params, **(overrides or {})})
        checked = {k: getattr(params, k) for k in overrides or {}}
        fixed = ref.spec.params.fixed_fields
        for key, value in checked.items():
            if key in fixed and value != parent.params.get(key):
                allowed = sorted(set(ref.spec.params.model_fields) - fixed)
                raise InputError(
                    key,
                    f"cannot be changed here (from {parent.params.get(key)!r} to {value!r}): it fixes the schedule "
                    f"or the latent shape, which a fork or edit continues. Allowed: {', '.join(allowed)}; "
                    "to change it, start a new session",
                )
        self._check_stages(ref)
        return ref, params, checked

    def _child_doc(
        self, parent: SessionDoc, params: Any, operation: Operation, step: int, overrides: dict[str, Any]
    ) -> SessionDoc:
        """The document of a session branching from ``parent`` at ``step``: same model and schedule."""
        return SessionDoc(
            model=parent.model,
            params=params.model_dump(),
            device=str(self.device),
            dtype=self.dtype,
            total_steps=parent.total_steps,
            timesteps=parent.timesteps,
            step_index=step,
            operation=operation,
            parent=parent.id,
            parent_step=step,
            overrides=overrides,
        )

    def fork(self, parent_id: str, step: int, overrides: dict[str, Any] | None = None) -> Session:
        """A new session that continues ``parent_id`` from its checkpoint at ``step``.

        ``overrides`` may change any parameter but those fixing the schedule or the
        latent shape (``fixed_fields``); a new seed reseeds the noise drawn from then on.
        The child shares the parent's checkpoint at ``step`` (a hard link, no copy)
        and runs only the remaining steps. Nothing is computed here.
        """
        parent = self.store.load_doc(parent_id)
        ref, params, overrides = self._with_overrides(parent, overrides)
        total = parent.total_steps
        if not 0 <= step < total:
            raise InputError("step", f"a fork of session {parent.id} starts at a step in 0..{total - 1}, got {step}")
        at = next((c for c in parent.checkpoints if c.step == step), None)
        if parent.parent is not None and step < (parent.parent_step or 0):
            raise InputError(
                "step",
                f"session {parent.id} branched from {parent.parent} at step {parent.parent_step}; before that its "
                f"state is its parent's, reached with other parameters — fork {parent.parent} at step {step} instead",
            )
        if at is None:
            have = ", ".join(str(c.step) for c in parent.checkpoints) or "none"
            raise InputError(
                "step",
                f"session {parent.id} has no checkpoint at step {step} (it has: {have}); fork at one of those, "
                "or keep more with checkpoint_every=1 checkpoint_keep=0",
            )
        doc = self._child_doc(parent, params, Operation.FORK, step, overrides)
        # Only the fork point is shared: the parent's earlier checkpoints were reached with the
        # parent's parameters, so a fork of this fork before step k could not reproduce it.
        reseed = "seed" in overrides and overrides["seed"] != parent.params.get("seed")
        if not reseed:
            doc.checkpoints.append(self.store.share_file(parent.id, at, doc.id))
        else:
            # The fork point itself with the new seed: fresh noise from here on differs.
            tensors, metadata = self.store.read_tensors(parent.id, at)
            tensors["rng.generator"] = torch.Generator("cpu").manual_seed(params.seed).get_state()
            record = self.store.write_tensors(doc.id, at.file, tensors, metadata)
            doc.checkpoints.append(CheckpointRecord(step=step, **record.model_dump()))
        if parent.edit is not None and parent.edit.tensors is not None:
            # A fork of a masked edit goes on blending the same source back outside the mask.
            doc.edit = parent.edit.model_copy(
                update={"tensors": self.store.share_file(parent.id, parent.edit.tensors, doc.id)}
            )
        changed = {k for k, v in params.model_dump().items() if parent.params.get(k) != v}
        if parent.conditioning is not None and not changed - NON_CONDITIONING:
            doc.conditioning = self.store.share_file(parent.id, parent.conditioning, doc.id)
        self.store.save_doc(doc)
        return Session(doc=doc, ref=ref, params=params, step_index=step)

    def edit(
        self,
        source_id: str,
        step: int | None = None,
        strength: float | None = None,
        overrides: dict[str, Any] | None = None,
        mask: EditMask | None = None,
    ) -> Session:
        """Re-noise a session's video to ``step`` and re-denoise only from there (SDEdit).

        Give ``step`` (0..N-1: the edit runs N - step steps) or ``strength`` (diffusers'
        meaning: the share of the schedule re-run, so step = N - round(strength * N)).
        Inside ``mask`` the video is re-denoised (with a new prompt if overridden);
        outside it the source is blended back at every step, so it is kept exactly.
        A finished source edits its final latents; an unfinished one its clean estimate
        at its last checkpoint (one model call).
        """
        parent = self.store.load_doc(source_id)
        ref, params, overrides = self._with_overrides(parent, overrides)
        total = parent.total_steps
        if (step is None) == (strength is None):
            raise InputError("step", "give either step or strength")
        if strength is not None:
            if not 0 < strength <= 1:
                raise InputError("strength", f"must be in (0, 1], got {strength}")
            step = total - round(strength * total)
            if step >= total:
                raise InputError("strength", f"{strength} re-runs no step of {total}; use at least {1 / total:.3g}")
        assert step is not None
        if not 0 <= step < total:
            raise InputError("step", f"an edit of session {parent.id} starts at a step in 0..{total - 1}, got {step}")
        mask = mask or EditMask()
        region = latent_mask(mask, params, ref.spec.latent_space)
        if parent.final is None and not parent.checkpoints:
            raise InputError("session", f"session {parent.id} has not run a step yet: there is nothing to edit")

        # Every check has passed: now the source latents (one model call for an unfinished source).
        if parent.final is not None:
            source, source_step = "final", total
            x0 = self.final_latents(parent.id)
        else:
            source, source_step = "estimate", parent.checkpoints[-1].step
            x0 = self.clean_estimate(parent.id)
        x0 = x0.detach().to("cpu", torch.float32)
        generator = torch.Generator("cpu").manual_seed(params.seed)
        noise = torch.randn(x0.shape, generator=generator, dtype=torch.float32)
        tensors = {"x0": x0, "noise": noise, "rng.generator": generator.get_state()}
        if region is not None:
            tensors["mask"] = region
        doc = self._child_doc(parent, params, Operation.EDIT, step, overrides)
        doc.edit = EditInfo(
            start_step=step,
            source=source,
            source_step=source_step,
            rect=mask.rect,
            frames=mask.frames,
            mask_image=mask.image,
            coverage=float(region.float().mean()) if region is not None else 1.0,
            tensors=self.store.write_tensors(doc.id, EDIT_FILE, tensors),
        )
        self.store.save_doc(doc)
        return Session(doc=doc, ref=ref, params=params, step_index=step)

    def clean_estimate(self, session_id: str) -> torch.Tensor:
        """The clean video an unfinished session is heading for, from its last checkpoint.

        One model call: x0 = x_t - sigma_t * v for flow-matching schedules.
        """
        session = self.open(session_id)
        if not session.doc.checkpoints:
            raise SessionError(f"session {session_id} has no checkpoint yet")
        with torch.no_grad():
            components = self.pool.get(session.ref, self.device, self.dtype)
            self._restore(session, components, writer=None)
            assert session.schedule is not None and session.latents is not None
            if session.done:
                return session.latents
            if not session.schedule.is_flow:
                raise SessionError(
                    f"session {session_id}: a clean estimate needs a flow-matching schedule; finish the session first"
                )
            i = session.step_index
            output = self._stage("arc_denoise_step", session)(
                model=session.ref,
                components=components,
                latents=session.latents,
                step=self._context(session, i),
                conditioning=session.conditioning,
                params=session.params,
            )
            return session.schedule.predict_x0(output, i, session.latents)

    # ------------------------------------------------------------ running

    def run(
        self,
        session: Session,
        until: int | None = None,
        listeners: Iterable[Listener] = (),
        stop: Callable[[], bool] | None = None,
    ) -> Session:
        """Run ``session`` to step ``until`` (default: the end), checkpointing as it goes.

        ``stop`` is asked after every step; when it says yes the session pauses there,
        checkpointed (how a queued job is cancelled mid-run).

        One writer per session: another process (or thread) running the same session
        is refused. On Ctrl-C the session is left paused at its last checkpoint; on an
        error, failed with the error recorded — its checkpoints stay loadable either way.
        """
        total = session.doc.total_steps
        until_step = total if until is None else until
        if not 0 <= until_step <= total:
            raise InputError("until", f"must be between 0 and {total} steps, got {until_step}")
        listeners = list(listeners)
        with self.store.lock(session.id):
            writer = CheckpointWriter(self.store, session.doc)
            try:
                with torch.no_grad():
                    components = self.pool.get(session.ref, self.device, self.dtype)
                    if session.latents is None:
                        if session.doc.checkpoints:
                            self._restore(session, components, writer)
                        elif session.doc.operation is Operation.EDIT:
                            self._start_edit(session, components, writer)
                        else:
                            self._start(session, components, writer)
                    self._set_status(session, writer, SessionStatus.RUNNING)
                    self._loop(session, components, max(until_step, session.step_index), writer, listeners, stop)
                    if session.done:
                        self._finish(session, writer)
                    else:
                        self._set_status(session, writer, SessionStatus.PAUSED)
                    writer.flush()
            except BaseException as exc:
                status = SessionStatus.PAUSED if isinstance(exc, KeyboardInterrupt) else SessionStatus.FAILED
                error = None if status is SessionStatus.PAUSED else f"{type(exc).__name__}: {exc}"
                # Record the outcome if the store still takes writes; the original error wins either way.
                with contextlib.suppress(SessionError):
                    self._set_status(session, writer, status, error)
                    writer.flush()
                raise
            finally:
                writer.close()
        return session

    def _stage(self, name: str, session: Session) -> Any:
        return self.plugins.stage(name, session.ref.spec.name)

    def _encode(self, session: Session, components: Any, writer: CheckpointWriter | None) -> None:
        """Encode the prompt; write it so that a resume need not (if a writer is given)."""
        ref, params = session.ref, session.params
        session.conditioning = self._stage("arc_encode", session)(model=ref, components=components, params=params)
        if writer is None:
            return
        cond = {k: v.detach().to("cpu", copy=True) for k, v in session.conditioning.items()}
        doc = session.doc

        def write() -> None:
            doc.conditioning = self.store.write_tensors(doc.id, CONDITIONING_FILE, cond)

        writer.submit(write)

    def _start(self, session: Session, components: Any, writer: CheckpointWriter) -> None:
        self._encode(session, components, writer)
        session.schedule = self._new_schedule(session, components)
        session.generator = torch.Generator("cpu").manual_seed(session.params.seed)
        session.latents = self._stage("arc_prepare_latents", session)(
            model=session.ref, components=components, params=session.params, generator=session.generator
        ).to(torch.float32)
        self._record_timesteps(session, writer)
        self._checkpoint(session, writer)

    def _start_edit(self, session: Session, components: Any, writer: CheckpointWriter) -> None:
        """The edit's first state: the source re-noised to the level of its start step."""
        info = session.doc.edit
        assert info is not None and info.tensors is not None
        self._encode(session, components, writer)
        session.schedule = self._new_schedule(session, components)
        session.schedule.start_at(info.start_step)
        tensors = self._load_edit(session)
        session.generator = torch.Generator("cpu")
        session.generator.set_state(tensors["rng.generator"])
        x0, noise = tensors["x0"].to(self.device), tensors["noise"].to(self.device)
        session.latents = session.schedule.add_noise(x0, noise, info.start_step).to(torch.float32)
        session.step_index = info.start_step
        self._record_timesteps(session, writer)
        self._checkpoint(session, writer)

    def _load_edit(self, session: Session) -> dict[str, torch.Tensor]:
        info = session.doc.edit
        assert info is not None and info.tensors is not None
        tensors, _ = self.store.read_tensors(session.id, info.tensors)
        if "mask" in tensors:
            session.blend = Blend(
                x0=tensors["x0"].to(self.device),
                noise=tensors["noise"].to(self.device),
                mask=tensors["mask"].to(self.device),
            )
        return tensors

    def _record_timesteps(self, session: Session, writer: CheckpointWriter) -> None:
        assert session.schedule is not None
        timesteps = [float(t) for t in session.schedule.timesteps]
        doc = session.doc

        def write() -> None:
            doc.timesteps = timesteps

        writer.submit(write)

    def _new_schedule(self, session: Session, components: Any) -> Schedule:
        schedule = self._stage("arc_schedule", session)(model=session.ref, components=components, params=session.params)
        if len(schedule) != session.doc.total_steps:
            raise SessionError(
                f"{session.ref.spec.name}: arc_schedule gave {len(schedule)} timesteps for "
                f"{session.doc.total_steps} steps"
            )
        if session.doc.timesteps and [float(t) for t in schedule.timesteps] != session.doc.timesteps:
            raise SessionError(
                f"session {session.id}: the schedule no longer matches the stored one (a parameter or the "
                "plugin changed how timesteps are made); the session cannot continue exactly"
            )
        return schedule

    @staticmethod
    def _context(session: Session, index: int) -> StepContext:
        schedule = session.schedule
        assert schedule is not None
        sigmas = schedule.sigmas
        return StepContext(
            index=index,
            total=session.doc.total_steps,
            timestep=schedule.timesteps[index],
            sigma=float(sigmas[index]) if sigmas is not None else None,
        )

    def _loop(
        self,
        session: Session,
        components: Any,
        until: int,
        writer: CheckpointWriter,
        listeners: list[Listener],
        stop: Callable[[], bool] | None = None,
    ) -> None:
        schedule, ref, params = session.schedule, session.ref, session.params
        assert schedule is not None and session.latents is not None and session.conditioning is not None
        denoise = self._stage("arc_denoise_step", session)
        started, done_before = time.perf_counter(), session.step_index
        while session.step_index < until:
            i = session.step_index
            t0 = time.perf_counter()
            ctx = self._context(session, i)
            output = denoise(
                model=ref,
                components=components,
                latents=session.latents,
                step=ctx,
                conditioning=session.conditioning,
                params=params,
            )
            session.latents = schedule.step(output, i, session.latents, session.generator)
            if session.blend is not None:
                session.latents = session.blend.apply(session.latents, schedule, i + 1)
            session.step_index = i + 1
            if self.checkpoint_every and (session.step_index % self.checkpoint_every == 0 or session.done):
                self._checkpoint(session, writer)
            now = time.perf_counter()
            event = StepEvent(
                session_id=session.id,
                step=session.step_index,
                total=session.doc.total_steps,
                timestep=float(ctx.timestep),
                step_seconds=now - t0,
                elapsed_seconds=now - started,
                first_step=done_before,
            )
            for listener in listeners:
                listener(event)
            if stop is not None and not session.done and stop():
                if self.checkpoint_every and session.step_index % self.checkpoint_every:
                    self._checkpoint(session, writer)  # pause exactly here, not at the last checkpoint
                return

    def _checkpoint(self, session: Session, writer: CheckpointWriter) -> None:
        """Snapshot the loop state now; serialise and write it on the writer thread."""
        assert session.latents is not None and session.schedule is not None
        if not self.checkpoint_every:
            return
        sched_tensors, sched_json = capture(session.schedule.scheduler)
        tensors = {
            "latents": session.latents.detach().to("cpu", torch.float32, copy=True),
            "rng.generator": session.generator.get_state(),
            "rng.torch_cpu": torch.get_rng_state(),
            **sched_tensors,
        }
        step = session.step_index
        metadata = {
            "step": str(step),
            "scheduler_state": sched_json,
            "scheduler_class": type(session.schedule.scheduler).__name__,
        }
        doc, keep, keep_steps = session.doc, self.checkpoint_keep, self.checkpoint_keep_steps
        # A fork or edit always keeps its first own checkpoint: it is where the branch starts.
        keep_steps = keep_steps | {doc.parent_step or 0}

        def write() -> list[str]:
            record = self.store.write_tensors(doc.id, checkpoint_name(step), tensors, metadata)
            doc.step_index = step
            return add_checkpoint(doc, record, step, keep, keep_steps)  # removed once the doc is saved

        writer.submit(write)

    def _restore(self, session: Session, components: Any, writer: CheckpointWriter | None) -> None:
        """Rebuild the loop state from the newest checkpoint whose checksum holds."""
        doc = session.doc
        if doc.conditioning is None:
            self._encode(session, components, writer)  # a fork that changed the prompt
        else:
            cond, _ = self.store.read_tensors(doc.id, doc.conditioning)
            session.conditioning = {k: v.to(self.device) for k, v in cond.items()}
        errors = []
        for record in reversed(doc.checkpoints):
            try:
                tensors, metadata = self.store.read_tensors(doc.id, record)
                break
            except SessionError as exc:
                errors.append(str(exc))
                log.warning("%s; falling back to an earlier checkpoint", exc)
        else:
            raise SessionError("; ".join(errors) or f"session {doc.id}: no readable checkpoint")
        session.schedule = self._new_schedule(session, components)
        restore(session.schedule.scheduler, tensors, metadata["scheduler_state"], self.device)
        session.latents = tensors["latents"].to(self.device)
        session.generator = torch.Generator("cpu")
        session.generator.set_state(tensors["rng.generator"])
        torch.set_rng_state(tensors["rng.torch_cpu"])
        session.step_index = int(metadata["step"])
        if doc.edit is not None:
            self._load_edit(session)

    def _finish(self, session: Session, writer: CheckpointWriter) -> None:
        assert session.latents is not None
        latents = session.latents.detach().to("cpu", torch.float32, copy=True)
        doc = session.doc

        def write() -> None:
            doc.final = self.store.write_tensors(doc.id, LATENTS_FILE, {LATENTS_KEY: latents})
            doc.status = SessionStatus.COMPLETED
            doc.error = None

        writer.submit(write)

    def _set_status(
        self, session: Session, writer: CheckpointWriter, status: SessionStatus, error: str | None = None
    ) -> None:
        doc = session.doc

        def write() -> None:
            doc.status = status
            doc.error = error

        writer.submit(write)

    # ------------------------------------------------------------ results

    def resume(
        self,
        session_id: str,
        until: int | None = None,
        listeners: Iterable[Listener] = (),
        stop: Callable[[], bool] | None = None,
    ) -> Session:
        """Continue a stored session from its newest good checkpoint (also in a new process)."""
        return self.run(self.open(session_id), until=until, listeners=listeners, stop=stop)

    def final_latents(self, session: Session | str) -> torch.Tensor:
        """The finished session's latents; its last checkpoint stands in if the file is corrupt."""
        session_id = session if isinstance(session, str) else session.id
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

    def preview_latents(self, session_id: str) -> tuple[torch.Tensor, int]:
        """(latents to decode, step they show): final latents, or the clean estimate so far."""
        doc = self.store.load_doc(session_id)
        if doc.final is not None:
            return self.final_latents(session_id), doc.total_steps
        if not doc.checkpoints:
            raise SessionError(f"session {session_id} has not run a step yet: there is nothing to decode")
        return self.clean_estimate(session_id), doc.checkpoints[-1].step

    def decode(self, session: Session, latents: torch.Tensor | None = None) -> torch.Tensor:
        """Decode the session's latents (or ``latents``) to (F, H, W, 3) frames in [0, 1]."""
        latents = latents if latents is not None else session.latents
        if latents is None:
            latents = self.final_latents(session)
        components = self.pool.get(session.ref, self.device, self.dtype)
        with torch.no_grad():
            frames = self._stage("arc_decode", session)(
                model=session.ref, components=components, latents=latents.to(self.device), params=session.params
            )
        return frames.detach().to("cpu", torch.float32)

    def delete(self, session_id: str) -> int:
        """Delete a session (refused while it runs); children keep the files they share."""
        return self.store.delete(session_id)
