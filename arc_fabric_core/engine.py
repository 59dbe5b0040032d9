"""The engine owns the denoising loop; plugins own one step.

Because the loop lives here, every model gets the same session behaviour for free:
checkpoints, resume, per-step events, and (later) fork, edit and hand-off.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import torch

from arc_fabric_core.errors import InputError, SessionError
from arc_fabric_core.model_pool import ModelPool, check_dtype, resolve_device
from arc_fabric_core.models import ModelRef
from arc_fabric_core.params import GenerationParams
from arc_fabric_core.plugins import STAGE_HOOKS, Plugins, get_plugins
from arc_fabric_core.schedule import Schedule, StepContext
from arc_fabric_core.scheduler_state import capture, restore
from arc_fabric_core.session import LATENTS_KEY, ModelInfo, SessionDoc, SessionStatus
from arc_fabric_core.store import CheckpointWriter, SessionStore, add_checkpoint, checkpoint_name

CONDITIONING_FILE = "conditioning.safetensors"
LATENTS_FILE = "latents.safetensors"


@dataclass(frozen=True)
class StepEvent:
    """Emitted after every step: what a progress bar, a log or a WebSocket needs."""

    session_id: str
    step: int  # steps done
    total: int
    timestep: float
    step_seconds: float
    elapsed_seconds: float

    @property
    def eta_seconds(self) -> float:
        done = max(self.step, 1)
        return self.elapsed_seconds / done * (self.total - self.step)


Listener = Callable[[StepEvent], None]


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

    @property
    def id(self) -> str:
        return self.doc.id

    @property
    def done(self) -> bool:
        return self.step_index >= self.doc.total_steps


class Engine:
    """Creates, runs and resumes sessions.

    ``checkpoint_every``: checkpoint every k steps (the last step always is);
    ``checkpoint_keep``: keep the newest n checkpoints (0 = all).
    """

    def __init__(
        self,
        store: SessionStore,
        plugins: Plugins | None = None,
        device: str | torch.device = "auto",
        dtype: str = "auto",
        pool: ModelPool | None = None,
        checkpoint_every: int = 1,
        checkpoint_keep: int = 2,
    ) -> None:
        if checkpoint_every < 1:
            raise InputError("checkpoint_every", f"must be >= 1, got {checkpoint_every}")
        if checkpoint_keep < 0:
            raise InputError("checkpoint_keep", f"must be >= 0 (0 keeps all), got {checkpoint_keep}")
        self.store = store
        self.plugins = plugins or get_plugins()
        self.device = resolve_device(device)
        self.dtype = check_dtype(dtype)
        self.pool = pool or ModelPool(self.plugins)
        self.checkpoint_every = checkpoint_every
        self.checkpoint_keep = checkpoint_keep

    # ------------------------------------------------------------ create / open

    def resolve(self, model: str, variant: str | None = "auto", weights: str | None = None) -> ModelRef:
        return self.plugins.model(model).resolve(variant, weights)

    def create(
        self, model: str | ModelRef, params: dict[str, Any], variant: str | None = "auto", weights: str | None = None
    ) -> Session:
        """Validate everything and write the session's document. No model loads here."""
        ref = model if isinstance(model, ModelRef) else self.resolve(model, variant, weights)
        checked = ref.params(params)
        for stage in STAGE_HOOKS:
            self.plugins.stage(stage, ref.spec.name)  # a plugin missing a stage fails here, not mid-run
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

    def open(self, session_id: str) -> Session:
        """Load a session from the store; its tensors are restored when it next runs."""
        doc = self.store.load_doc(session_id)
        ref = self.resolve(doc.model.name, doc.model.variant, doc.model.weights)
        params = ref.params(doc.params)
        session = Session(doc=doc, ref=ref, params=params)
        session.step_index = doc.checkpoints[-1].step if doc.checkpoints else 0
        return session

    # ------------------------------------------------------------ running

    def run(self, session: Session, until: int | None = None, listeners: Iterable[Listener] = ()) -> Session:
        """Run ``session`` to step ``until`` (default: the end), checkpointing as it goes.

        On Ctrl-C the session is left paused at its last checkpoint; on an error,
        failed with the error recorded — its checkpoints stay loadable either way.
        """
        total = session.doc.total_steps
        stop = total if until is None else until
        if not 0 <= stop <= total:
            raise InputError("until", f"must be between 0 and {total} steps, got {stop}")
        listeners = list(listeners)
        writer = CheckpointWriter(self.store)
        try:
            with torch.no_grad():
                components = self.pool.get(session.ref, self.device, self.dtype)
                if session.latents is None:
                    if session.doc.checkpoints:
                        self._restore(session, components)
                    else:
                        self._start(session, components, writer)
                self._set_status(session, writer, SessionStatus.RUNNING)
                self._loop(session, components, stop, writer, listeners)
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

    def _start(self, session: Session, components: Any, writer: CheckpointWriter) -> None:
        ref, params = session.ref, session.params
        session.conditioning = self._stage("arc_encode", session)(model=ref, components=components, params=params)
        session.schedule = self._new_schedule(session, components)
        session.generator = torch.Generator("cpu").manual_seed(params.seed)
        session.latents = self._stage("arc_prepare_latents", session)(
            model=ref, components=components, params=params, generator=session.generator
        ).to(torch.float32)
        cond = {k: v.detach().to("cpu", copy=True) for k, v in session.conditioning.items()}
        timesteps = [float(t) for t in session.schedule.timesteps]
        doc = session.doc

        def write_conditioning() -> None:
            doc.conditioning = self.store.write_tensors(doc.id, CONDITIONING_FILE, cond)
            doc.timesteps = timesteps
            self.store.save_doc(doc)

        writer.submit(write_conditioning)
        self._checkpoint(session, writer)

    def _new_schedule(self, session: Session, components: Any) -> Schedule:
        schedule = self._stage("arc_schedule", session)(model=session.ref, components=components, params=session.params)
        if len(schedule) != session.doc.total_steps:
            raise SessionError(
                f"{session.ref.spec.name}: arc_schedule gave {len(schedule)} timesteps for "
                f"{session.doc.total_steps} steps"
            )
        return schedule

    def _loop(
        self, session: Session, components: Any, stop: int, writer: CheckpointWriter, listeners: list[Listener]
    ) -> None:
        schedule, ref, params = session.schedule, session.ref, session.params
        assert schedule is not None and session.latents is not None and session.conditioning is not None
        denoise = self._stage("arc_denoise_step", session)
        sigmas = schedule.sigmas
        started = time.perf_counter()
        while session.step_index < stop:
            i = session.step_index
            t0 = time.perf_counter()
            ctx = StepContext(
                index=i,
                total=session.doc.total_steps,
                timestep=schedule.timesteps[i],
                sigma=float(sigmas[i]) if sigmas is not None else None,
            )
            output = denoise(
                model=ref,
                components=components,
                latents=session.latents,
                step=ctx,
                conditioning=session.conditioning,
                params=params,
            )
            session.latents = schedule.step(output, i, session.latents, session.generator)
            session.step_index = i + 1
            if session.step_index % self.checkpoint_every == 0 or session.done:
                self._checkpoint(session, writer)
            now = time.perf_counter()
            event = StepEvent(
                session_id=session.id,
                step=session.step_index,
                total=session.doc.total_steps,
                timestep=float(ctx.timestep),
                step_seconds=now - t0,
                elapsed_seconds=now - started,
            )
            for listener in listeners:
                listener(event)

    def _checkpoint(self, session: Session, writer: CheckpointWriter) -> None:
        """Snapshot the loop state now; serialise and write it on the writer thread."""
        assert session.latents is not None and session.schedule is not None
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
        doc, keep = session.doc, self.checkpoint_keep

        def write() -> None:
            record = self.store.write_tensors(doc.id, checkpoint_name(step), tensors, metadata)
            dropped = add_checkpoint(doc, record, step, keep)
            doc.step_index = step
            self.store.save_doc(doc)
            for name in dropped:
                self.store.remove_file(doc.id, name)

        writer.submit(write)

    def _restore(self, session: Session, components: Any) -> None:
        """Rebuild the loop state from the newest checkpoint whose checksum holds."""
        doc = session.doc
        if doc.conditioning is None:
            raise SessionError(f"session {doc.id} has checkpoints but no conditioning file")
        cond, _ = self.store.read_tensors(doc.id, doc.conditioning)
        session.conditioning = {k: v.to(self.device) for k, v in cond.items()}
        errors = []
        for record in reversed(doc.checkpoints):
            try:
                tensors, metadata = self.store.read_tensors(doc.id, record)
                break
            except SessionError as exc:
                errors.append(str(exc))
        else:
            raise SessionError("; ".join(errors) or f"session {doc.id}: no readable checkpoint")
        session.schedule = self._new_schedule(session, components)
        restore(session.schedule.scheduler, tensors, metadata["scheduler_state"], self.device)
        session.latents = tensors["latents"].to(self.device)
        session.generator = torch.Generator("cpu")
        session.generator.set_state(tensors["rng.generator"])
        torch.set_rng_state(tensors["rng.torch_cpu"])
        session.step_index = int(metadata["step"])

    def _finish(self, session: Session, writer: CheckpointWriter) -> None:
        assert session.latents is not None
        latents = session.latents.detach().to("cpu", torch.float32, copy=True)
        doc = session.doc

        def write() -> None:
            doc.final = self.store.write_tensors(doc.id, LATENTS_FILE, {LATENTS_KEY: latents})
            doc.status = SessionStatus.COMPLETED
            doc.error = None
            self.store.save_doc(doc)

        writer.submit(write)

    def _set_status(
        self, session: Session, writer: CheckpointWriter, status: SessionStatus, error: str | None = None
    ) -> None:
        doc = session.doc

        def write() -> None:
            doc.status = status
            doc.error = error
            self.store.save_doc(doc)

        writer.submit(write)

    # ------------------------------------------------------------ results

    def resume(self, session_id: str, until: int | None = None, listeners: Iterable[Listener] = ()) -> Session:
        """Continue a stored session from its newest good checkpoint (also in a new process)."""
        return self.run(self.open(session_id), until=until, listeners=listeners)

    def final_latents(self, session: Session | str) -> torch.Tensor:
        session_id = session if isinstance(session, str) else session.id
        doc = self.store.load_doc(session_id)
        if doc.final is None:
            raise SessionError(f"session {session_id} is not finished ({doc.step_index}/{doc.total_steps} steps)")
        tensors, _ = self.store.read_tensors(session_id, doc.final)
        return tensors[LATENTS_KEY]

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
