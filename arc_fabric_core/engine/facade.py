"""The engine owns the denoising loop; plugins own one step.

Because the loop lives here, every model gets the same session behaviour for free:
checkpoints, resume, per-step events, fork, edit and hand-off. This module is the
facade: sessions in and out, runs, results. The loop itself is
:mod:`arc_fabric_core.engine.loop`; what each operation checks and creates is its
module under :mod:`arc_fabric_core.operations`, reached through the operations registry
(the methods below that name an operation are shorthand for it).
"""

from __future__ import annotations

import contextlib
import logging
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import torch

from arc_fabric_core.contract.errors import InputError, SessionError, brief
from arc_fabric_core.contract.models import ModelRef
from arc_fabric_core.contract.params import GenerationParams
from arc_fabric_core.dispatch.plugins import Plugins, get_plugins
from arc_fabric_core.engine import planning
from arc_fabric_core.engine.binding import Binder
from arc_fabric_core.engine.checkpoints import Checkpointer, CheckpointPolicy
from arc_fabric_core.engine.hybrid import HybridSpec
from arc_fabric_core.engine.live import LiveStates
from arc_fabric_core.engine.loop import denoise
from arc_fabric_core.engine.observers import EditBlend, Events, FiniteCheck, StopWhen
from arc_fabric_core.engine.results import Results
from arc_fabric_core.engine.run import Run
from arc_fabric_core.engine.state import Listener, Session, StepEvent
from arc_fabric_core.runtime.model_cache import ModelCache, check_dtype, resolve_device
from arc_fabric_core.store.files import CheckpointWriter, SessionStore
from arc_fabric_core.store.session import LATENTS_KEY, SessionDoc, SessionStatus

LATENTS_FILE = "latents.safetensors"

log = logging.getLogger("arc_fabric")

__all__ = ["Engine", "Listener", "Session", "StepEvent", "check_until"]


class Engine:
    """Creates, runs and resumes sessions, and applies the registered operations to them.

    Checkpoint policy (:class:`CheckpointPolicy`): ``checkpoint_every`` k steps (the
    first and last step always are; 0 = none at all: a batch run that cannot be resumed
    or forked); ``checkpoint_keep`` the newest n (0 = all, the default: any step can be
    forked); ``checkpoint_keep_steps`` are kept whatever n says.
    """

    def __init__(
        self,
        store: SessionStore,
        plugins: Plugins | None = None,
        device: str | torch.device = "auto",
        dtype: str = "auto",
        cache: ModelCache | None = None,
        checkpoint_every: int = 1,
        checkpoint_keep: int = 0,
        checkpoint_keep_steps: Iterable[int] = (),
    ) -> None:
        self.policy = CheckpointPolicy.checked(checkpoint_every, checkpoint_keep, checkpoint_keep_steps)
        self.store = store
        self.plugins = plugins or get_plugins()
        self.device = resolve_device(device)
        # Where models go: "auto" lets the cache place each where there is room.
        self.placement: str | torch.device = "auto" if str(device) == "auto" else self.device
        self.dtype = check_dtype(dtype)
        self.cache = cache or ModelCache(self.plugins)
        self.binder = Binder(self.plugins, self.cache, store, self.device, self.placement, self.dtype)
        self.live = LiveStates()
        # The cache outlives engines (a process shares one): it must not keep this one's live
        # state alive, so it hears of it through a weak reference, dropped with the engine.
        live = weakref.ref(self.live)

        def on_cache_event(event: Any) -> None:
            states = live()
            if states is not None:
                states.on_cache_event(event)

        weakref.finalize(self, self.cache.subscribe(on_cache_event))
        self.results = Results(self.binder)

    @property
    def checkpoint_every(self) -> int:
        return self.policy.every

    @property
    def checkpoint_keep(self) -> int:
        return self.policy.keep

    @property
    def checkpoint_keep_steps(self) -> frozenset[int]:
        return self.policy.keep_steps

    # ------------------------------------------------------------ sessions in

    def resolve(self, model: str, variant: str | None = "auto", weights: str | None = None) -> ModelRef:
        return planning.resolve(self.plugins, model, variant, weights)

    def plan(
        self,
        model: str | ModelRef,
        params: dict[str, Any],
        variant: str | None = "auto",
        weights: str | None = None,
        hybrid: HybridSpec | None = None,
        inputs: Mapping[str, Any] | None = None,
    ) -> Session:
        """What :meth:`create` checks and builds, without writing anything (a queue checks
        a job with it when the job is submitted)."""
        return planning.plan(self.binder, model, params, variant, weights, hybrid, self.device, self.dtype, inputs)

    def create(
        self,
        model: str | ModelRef,
        params: dict[str, Any],
        variant: str | None = "auto",
        weights: str | None = None,
        hybrid: HybridSpec | None = None,
        inputs: Mapping[str, Any] | None = None,
    ) -> Session:
        """Validate everything and write the session (its inputs, then its document). No
        model loads here.

        With ``hybrid`` the stages of the schedule run the steps; a stage naming no
        model runs ``model`` and one naming no variant runs ``variant``. ``inputs``: the
        model's inputs beside text by name (tensors, lists of numbers or file paths).
        """
        session = self.plan(model, params, variant, weights, hybrid, inputs)
        self.save_new(session)
        return session

    def save_new(self, session: Session) -> None:
        """Write a planned session: its inputs beside text, then its document."""
        planning.write_new(self.store, session)

    def open(self, session_id: str) -> Session:
        """Load a session from the store; its tensors are restored when it next runs."""
        return planning.session_of(self.plugins, self.store.load_doc(session_id))

    def activation_bytes(self, ref: ModelRef, params: GenerationParams) -> int:
        return self.binder.activation_bytes(ref, params)

    def load(
        self,
        ref: ModelRef,
        device: str | torch.device | None = None,
        holder: str | None = None,
        params: GenerationParams | None = None,
    ) -> Any:
        """``ref``'s warm components, loaded by the cache on ``device`` (default: the
        engine's placement) with room for the activations a run with ``params`` needs."""
        return self.binder.load(ref, device, holder, params)

    # ------------------------------------------------------------ operations

    def operation(self, name: str) -> Any:
        """The registered operation ``name`` (:mod:`arc_fabric_core.operations`)."""
        return self.plugins.operation(name)

    def apply(self, session_id: str, name: str, request: Mapping[str, Any] | None = None) -> Session:
        """Operation ``name`` on stored session ``session_id``, its request given as its
        fields (e.g. ``apply(sid, "act", {"actions": rows})``): checked, then the session it
        works on made or opened; nothing runs (``run`` it)."""
        op = self.operation(name)
        if not op.on_session or not op.runs:
            raise InputError("operation", f"{name} is not an operation that makes a session run from another")
        plan = op.check(self, op.job_request(dict(request or {})), session_id)
        return op.create(self, plan)

    def autoregressive(self, model: str) -> bool:
        """Whether ``model`` makes its video a block at a time (it extends and rewinds)."""
        return self.plugins.implements("arc_extend_params", model)  # as capabilities() says

    def check_fork(
        self, parent_id: str, step: int, overrides: dict[str, Any] | None = None, hybrid: HybridSpec | None = None
    ) -> Any:
        """Everything :meth:`fork` checks, before any write (the fork's plan)."""
        return self.operation("fork").plan(self, parent_id, step, overrides, hybrid)

    def fork(
        self, parent_id: str, step: int, overrides: dict[str, Any] | None = None, hybrid: HybridSpec | None = None
    ) -> Session:
        """A new session that continues ``parent_id`` from its checkpoint at ``step``
        (:mod:`arc_fabric_core.operations.fork`; with ``hybrid``, a hand-off)."""
        return self.operation("fork").branch(self, self.check_fork(parent_id, step, overrides, hybrid))

    def check_edit(
        self,
        source_id: str,
        step: int | None = None,
        strength: float | None = None,
        overrides: dict[str, Any] | None = None,
        mask: Any = None,
    ) -> Any:
        """Everything :meth:`edit` checks, before any compute or write (the edit's plan)."""
        return self.operation("edit").plan(self, source_id, step, strength, overrides, mask)

    def edit(
        self,
        source_id: str,
        step: int | None = None,
        strength: float | None = None,
        overrides: dict[str, Any] | None = None,
        mask: Any = None,
    ) -> Session:
        """Re-noise a session's video to ``step`` and re-denoise only from there
        (:mod:`arc_fabric_core.operations.edit`)."""
        return self.operation("edit").branch(self, self.check_edit(source_id, step, strength, overrides, mask))

    def check_extension(
        self, parent_id: str, blocks: int, prompt: str | None = None, inputs: Mapping[str, Any] | None = None
    ) -> Any:
        """Everything :meth:`extend` checks, before any compute or write (the extension's plan)."""
        return self.operation("extend").plan(self, parent_id, blocks, prompt, dict(inputs or {}))

    def extend(
        self, parent_id: str, blocks: int, prompt: str | None = None, inputs: Mapping[str, Any] | None = None
    ) -> Session:
        """A finished autoregressive session made ``blocks`` blocks longer, with the new
        blocks' per-chunk ``inputs`` (:mod:`arc_fabric_core.operations.extend`)."""
        return self.operation("extend").branch(self, self.check_extension(parent_id, blocks, prompt, inputs))

    def check_rewind(
        self, session_id: str, block: int, prompt: str | None = None, overrides: dict[str, Any] | None = None
    ) -> tuple[int, dict[str, Any]]:
        """What :meth:`rewind` checks, before any write: the fork step and its overrides."""
        return self.operation("rewind").plan(self, session_id, block, prompt, overrides)

    def rewind(
        self, session_id: str, block: int, prompt: str | None = None, overrides: dict[str, Any] | None = None
    ) -> Session:
        """An autoregressive session rewound to ``block`` (:mod:`arc_fabric_core.operations.rewind`)."""
        step, changes = self.check_rewind(session_id, block, prompt, overrides)
        return self.fork(session_id, step, changes)

    def check_resume(self, session_id: str, until: int | None = None) -> SessionDoc:
        """What :meth:`resume` checks, before any load: a session not finished yet, and
        ``until`` within its steps."""
        doc = self.store.load_doc(session_id)
        if doc.final is not None:
            raise SessionError(f"session {session_id} is already finished; fork or edit it instead")
        check_until(until, doc.total_steps)
        return doc

    def resume(
        self,
        session_id: str,
        until: int | None = None,
        listeners: Iterable[Listener] = (),
        stop: Callable[[], bool] | None = None,
    ) -> Session:
        """Continue a stored session from its newest good checkpoint (also in a new process)."""
        self.check_resume(session_id, until)
        return self.run(self.open(session_id), until=until, listeners=listeners, stop=stop)

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
        until_step = check_until(until, session.doc.total_steps)
        with self._run_lock(session):
            writer = CheckpointWriter(self.store, session.doc)
            run = Run(
                session,
                self.binder,
                self.binder.models(session, writer),
                writer,
                Checkpointer(self.policy, self.store, writer),
                self.live,
            )
            try:
                with torch.no_grad():
                    if session.latents is None:
                        self._first_state(run)
                    self._set_status(writer, session, SessionStatus.RUNNING)
                    observers = [EditBlend(), FiniteCheck(writer), run.checkpointer, Events(list(listeners))]
                    if stop is not None:
                        observers.append(StopWhen(stop))
                    denoise(session, run.models, max(until_step, session.step_index), observers)
                    if session.done:
                        self._finish(writer, session)
                    else:
                        self._set_status(writer, session, SessionStatus.PAUSED)
                    writer.flush()
            except BaseException as exc:
                status = SessionStatus.PAUSED if isinstance(exc, KeyboardInterrupt) else SessionStatus.FAILED
                error = None if status is SessionStatus.PAUSED else brief(f"{type(exc).__name__}: {exc}")
                # Record the outcome if the store still takes writes; the original error wins either way.
                with contextlib.suppress(SessionError):
                    self._set_status(writer, session, status, error)
                    writer.flush()
                session.model_state.clear()  # made by a run that failed: not continued
                raise
            finally:
                writer.close()
                self._leave(run)
        return session

    def _first_state(self, run: Run) -> None:
        """A restored checkpoint, or the start of the operation that made the session."""
        doc = run.session.doc
        if doc.checkpoints:
            run.restore()
            if doc.edit is not None:
                run.load_edit()  # an edit, or a fork of one, goes on blending its source back
        else:
            self.plugins.operation_making(str(doc.operation)).start(run)

    def _leave(self, run: Run) -> None:
        """After a run: the cache lets go of the session's models; the plugins' state is
        parked, and kept live for the next operation that continues from here."""
        session = run.session
        bound = run.models.current
        self.cache.let_go(session.id)
        for value in session.model_state.values():
            park = getattr(value, "park", None)
            if callable(park):
                park()
        if bound is not None and session.model_state:
            self.live.keep(session.id, session.step_index, bound.ref.label, bound.components, session.model_state)

    @contextlib.contextmanager
    def _run_lock(self, session: Session) -> Iterator[None]:
        """The session's write lock for a run. A session refused it that never ran is
        recorded failed with the reason rather than left ``created`` — when the holder
        has let go by now (a passing gc); a holder still there owns the status."""
        entered = False
        try:
            with self.store.lock(session.id):
                entered = True
                yield
        except SessionError as exc:
            if not entered:
                with contextlib.suppress(SessionError):
                    created = frozenset({SessionStatus.CREATED})
                    self.store.set_status(session.id, SessionStatus.FAILED, brief(str(exc)), only_from=created)
            raise

    def _finish(self, writer: CheckpointWriter, session: Session) -> None:
        assert session.latents is not None
        latents = session.latents.detach().to("cpu", torch.float32, copy=True)
        doc, store = session.doc, self.store

        def write() -> None:
            doc.final = store.write_tensors(doc.id, LATENTS_FILE, {LATENTS_KEY: latents})
            doc.status = SessionStatus.COMPLETED
            doc.error = None

        writer.submit(write)

    @staticmethod
    def _set_status(
        writer: CheckpointWriter, session: Session, status: SessionStatus, error: str | None = None
    ) -> None:
        doc = session.doc

        def write() -> None:
            doc.status = status
            doc.error = error

        writer.submit(write)

    # ------------------------------------------------------------ results

    def clean_estimate(self, session_id: str, step: int | None = None) -> torch.Tensor:
        """The clean video a session is heading for at its checkpoint at ``step`` (default:
        its last checkpoint): one model call (:mod:`arc_fabric_core.engine.results`)."""
        return self.results.clean_estimate(self.open(session_id), step)

    def final_latents(self, session: Session | str) -> torch.Tensor:
        """The finished session's latents; its last checkpoint stands in if the file is corrupt."""
        return self.results.final_latents(session if isinstance(session, str) else session.id)

    def preview_latents(self, session_id: str, step: int | None = None) -> tuple[torch.Tensor, int]:
        """(latents to decode, step they show): final latents, or the clean estimate so far
        (or at the checkpoint at ``step``: a multi-pass model's low-resolution pass)."""
        doc = self.store.load_doc(session_id)
        if doc.final is not None and step in (None, doc.total_steps):
            return self.final_latents(session_id), doc.total_steps
        if not doc.checkpoints:
            raise SessionError(f"session {session_id} has not run a step yet: there is nothing to decode")
        return self.clean_estimate(session_id, step), step if step is not None else doc.checkpoints[-1].step

    def decode(self, session: Session, latents: torch.Tensor | None = None, step: int | None = None) -> torch.Tensor:
        """Decode the session's latents (or ``latents``, reached at ``step``) to (F, H, W, 3)
        frames in [0, 1], with the model of the stage that made them."""
        return self.results.decode(session, latents, step)

    def delete(self, session_id: str) -> int:
        """Delete a session (refused while it runs); children keep the files they share."""
        self.live.drop(session_id)
        return self.store.delete(session_id)


def check_until(until: int | None, total: int) -> int:
    """The step a run stops at: ``until`` (default: the end), refused outside 0..``total``."""
    until_step = total if until is None else until
    if not isinstance(until_step, int) or not 0 <= until_step <= total:
        raise InputError("until", f"must be between 0 and {total} steps, got {until_step}")
    return until_step
