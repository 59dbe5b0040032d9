"""The engine owns the denoising loop; plugins own one step.

Because the loop lives here, every model gets the same session behaviour for free:
checkpoints, resume, per-step events, and (later) fork, edit and hand-off.
"""

from __future__ import annotations

import bisect
import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch

from arc_fabric_core.contract.errors import ArcFabricError, InputError, SessionError, brief
from arc_fabric_core.contract.models import ModelRef
from arc_fabric_core.contract.params import GenerationParams
from arc_fabric_core.contract.schedule import DECODED_FRAMES, Schedule, StepContext
from arc_fabric_core.dispatch import hook_results
from arc_fabric_core.dispatch.plugins import OPTIONAL_STAGE_HOOKS, STAGE_HOOKS, Plugins, get_plugins
from arc_fabric_core.engine.edit_mask import EditMask, latent_mask
from arc_fabric_core.engine.hybrid import HybridSpec, check_latent_spaces, end_steps, resolve_stage
from arc_fabric_core.engine.scheduler_state import capture, restore
from arc_fabric_core.runtime.memory_fit import check_fits, working_floor
from arc_fabric_core.runtime.model_cache import ModelCache, check_dtype, resolve_device
from arc_fabric_core.store.files import DOC_COPY_KEY, CheckpointWriter, SessionStore, add_checkpoint, checkpoint_name
from arc_fabric_core.store.session import (
    LATENTS_KEY,
    CheckpointRecord,
    EditInfo,
    ModelInfo,
    Operation,
    SessionDoc,
    SessionStatus,
    StageInfo,
    step_ranges,
)

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
    """A session in memory: its document plus the live tensors the loop works on.

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
    # What plugins keep between steps (StepContext.state): memory only, rebuilt after a restore.
    model_state: dict[str, Any] = field(default_factory=dict)

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


@dataclass(frozen=True)
class ForkPlan:
    """What a fork was checked to be (:meth:`Engine.check_fork`): nothing written yet."""

    parent: SessionDoc
    ref: ModelRef
    params: GenerationParams
    overrides: dict[str, Any]  # as validated
    at: CheckpointRecord  # the parent's checkpoint the fork starts from
    stages: list[StageInfo] | None = None  # a fork that changes the hybrid schedule


@dataclass(frozen=True)
class EditPlan:
    """What an edit was checked to be (:meth:`Engine.check_edit`): nothing computed yet."""

    parent: SessionDoc
    ref: ModelRef
    params: GenerationParams
    overrides: dict[str, Any]  # as validated
    step: int  # where the re-denoising starts
    mask: EditMask
    region: torch.Tensor | None  # the latent mask; None: everywhere


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
        cache: ModelCache | None = None,
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
        # Where models go: "auto" lets the cache place each where there is room.
        self.placement: str | torch.device = "auto" if str(device) == "auto" else self.device
        self.dtype = check_dtype(dtype)
        self.cache = cache or ModelCache(self.plugins)
        self.checkpoint_every = checkpoint_every
        self.checkpoint_keep = checkpoint_keep
        self.checkpoint_keep_steps = keep_steps
        # One decode at a time per loaded model: a video VAE keeps its causal feature cache
        # on the module (diffusers' Wan VAE does), so two decodes at once mix their frames.
        self._decode_locks: dict[int, threading.Lock] = {}
        self._decode_locks_guard = threading.Lock()

    # ------------------------------------------------------------ create / open

    def resolve(self, model: str, variant: str | None = "auto", weights: str | None = None) -> ModelRef:
        return self.plugins.model(model).resolve(variant, weights)

    def create(
        self,
        model: str | ModelRef,
        params: dict[str, Any],
        variant: str | None = "auto",
        weights: str | None = None,
        hybrid: HybridSpec | None = None,
    ) -> Session:
        """Validate everything and write the session's document. No model loads here.

        With ``hybrid`` the stages of the schedule run the steps; a stage naming no
        model runs ``model`` and one naming no variant runs ``variant``.
        """
        session = self.plan(model, params, variant, weights, hybrid)
        self.store.save_doc(session.doc)
        return session

    def plan(
        self,
        model: str | ModelRef,
        params: dict[str, Any],
        variant: str | None = "auto",
        weights: str | None = None,
        hybrid: HybridSpec | None = None,
    ) -> Session:
        """What :meth:`create` checks and builds, without writing anything (a queue checks
        a job with it when the job is submitted)."""
        if hybrid is None:
            ref = model if isinstance(model, ModelRef) else self.resolve(model, variant, weights)
            resolved = [(ref, False)]
        else:
            name = model.spec.name if isinstance(model, ModelRef) else model
            default_variant = model.variant.name if isinstance(model, ModelRef) else variant
            resolved = [resolve_stage(self.plugins, st, name, default_variant, hybrid.tiny) for st in hybrid.stages]
            ref = resolved[0][0]
            check_latent_spaces([r for r, _ in resolved])
        checked = ref.params(params)
        passes = self._passes(ref, checked)
        total = sum(passes)
        stages = []
        for i, (stage_ref, stand_in) in enumerate(resolved):
            guidance = hybrid.stages[i].guidance if hybrid is not None else None
            stage_params = self._stage_params(stage_ref, checked, guidance) if hybrid is not None else checked
            self._check_stages(stage_ref)
            if i and self._passes(stage_ref, stage_params) != passes:
                raise InputError(
                    "schedule.stages",
                    f"stage {i} ({stage_ref.label}) denoises in passes {self._passes(stage_ref, stage_params)}, "
                    f"stage 0 ({ref.label}) in {passes}: the stages of one schedule must share its steps",
                )
            stages.append(Stage(stage_ref, stage_params, end=None if hybrid else total, stand_in=stand_in))
        self._check_memory(stages)
        doc = SessionDoc(
            model=self._model_info(ref),
            params=checked.model_dump(),
            device=str(self.device),
            dtype=self.dtype,
            total_steps=total,
            passes=passes if len(passes) > 1 else [],
        )
        if hybrid is not None:
            ends = end_steps(hybrid.unit, hybrid.boundaries, total, None)
            doc.schedule_name = hybrid.name
            doc.boundary_unit = hybrid.unit
            doc.stages = [
                StageInfo(
                    model=self._model_info(st.ref),
                    guidance=hybrid.stages[i].guidance,
                    boundary=hybrid.boundaries[i] if i < len(hybrid.boundaries) else None,
                    end_step=ends[i] if ends is not None else None,
                )
                for i, st in enumerate(stages)
            ]
            for st, info in zip(stages, doc.stages, strict=True):
                st.end = info.end_step
        return Session(doc=doc, ref=ref, params=checked, stages=stages)

    @staticmethod
    def _model_info(ref: ModelRef) -> ModelInfo:
        weights = str(ref.weights) if ref.weights else None
        return ModelInfo(name=ref.spec.name, variant=ref.variant.name, weights=weights)

    def _stage_params(self, ref: ModelRef, params: GenerationParams, guidance: float | None) -> GenerationParams:
        """A stage's parameters: the session's (those its model knows), its own guidance."""
        fields = ref.spec.params.model_fields
        values = {k: v for k, v in params.model_dump().items() if k in fields}
        if guidance is not None:
            values["guidance"] = guidance
        try:
            return ref.params(values)
        except InputError as exc:
            raise InputError(f"schedule.stages ({ref.label}): {exc.field}", exc.message) from None

    def _passes(self, ref: ModelRef, params: GenerationParams) -> list[int]:
        hook = self.plugins.optional_stage("arc_passes", ref.spec.name)
        passes = hook(model=ref, params=params) if hook is not None else None
        if not passes:
            return [params.steps]
        if any(int(n) < 1 for n in passes):
            raise SessionError(f"{ref.label}: arc_passes gave a pass without steps: {passes}")
        return [int(n) for n in passes]

    def _check_memory(self, stages: list[Stage]) -> None:
        """Refuse a size whose working memory no device here could hold (before anything
        is written, queued or loaded: the estimates are arithmetic on the sizes)."""
        devices = self.cache.every_device()
        for stage in stages:
            need = self.activation_bytes(stage.ref, stage.params)
            check_fits(stage.ref, stage.params, need or working_floor(stage.ref, stage.params), devices)

    def activation_bytes(self, ref: ModelRef, params: GenerationParams) -> int:
        """What a run with ``params`` needs beside ``ref``'s weights, as its plugin
        declares it (``arc_activation_bytes``); 0 when it does not say."""
        hook = self.plugins.optional_stage("arc_activation_bytes", ref.spec.name)
        return int(hook(model=ref, params=params) or 0) if hook is not None else 0

    def _check_stages(self, ref: ModelRef) -> None:
        for stage in STAGE_HOOKS:
            self.plugins.stage(stage, ref.spec.name)  # a plugin missing a stage fails here, not mid-run
        for optional, needs in OPTIONAL_STAGE_HOOKS.items():
            if self.plugins.optional_stage(optional, ref.spec.name) is not None:
                for hook in needs:
                    self.plugins.stage(hook, ref.spec.name)

    def _stages_of(self, doc: SessionDoc, params: GenerationParams) -> list[Stage]:
        """The stages a stored document describes (one for a plain session)."""
        if not doc.stages:
            ref = self.resolve(doc.model.name, doc.model.variant, doc.model.weights)
            return [Stage(ref, params, doc.total_steps)]
        stages = []
        for info in doc.stages:
            ref = self.resolve(info.model.name, info.model.variant, info.model.weights)
            stages.append(Stage(ref, self._stage_params(ref, params, info.guidance), info.end_step))
        if stages[-1].end is None and all(st.end is not None for st in stages[:-1]):
            stages[-1].end = doc.total_steps
        return stages

    def open(self, session_id: str) -> Session:
        """Load a session from the store; its tensors are restored when it next runs."""
        doc = self.store.load_doc(session_id)
        ref = self.resolve(doc.model.name, doc.model.variant, doc.model.weights)
        params = ref.params(doc.params)
        session = Session(doc=doc, ref=ref, params=params, stages=self._stages_of(doc, params))
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
        schema = ref.spec.params
        fixed = schema.fixed_fields
        allowed = ", ".join(sorted(set(schema.model_fields) - fixed))
        # Unknown and fixed fields first: the whole parameter set's own rules (a plugin's
        # "steps must match timesteps") would otherwise speak of a change that cannot happen.
        for key, value in (overrides or {}).items():
            if key not in schema.model_fields:
                raise InputError(key, f"unknown parameter of {ref.spec.name}; a fork or edit may change: {allowed}")
            if key in fixed and not _same_value(schema, key, value, parent.params.get(key)):
                raise InputError(
                    key,
                    f"cannot be changed here (from {parent.params.get(key)!r} to {value!r}): it fixes the schedule "
                    f"or the latent shape, which a fork or edit continues. Allowed: {allowed}; "
                    "to change it, start a new session",
                )
        params = ref.params({**parent.params, **(overrides or {})})
        checked = {k: getattr(params, k) for k in overrides or {}}
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
            sigmas=parent.sigmas,
            step_index=step,
            operation=operation,
            parent=parent.id,
            parent_step=step,
            overrides=overrides,
            schedule_name=parent.schedule_name,
            boundary_unit=parent.boundary_unit,
            stages=[st.model_copy(update={"conditioning": None}) for st in parent.stages],
            passes=parent.passes,
        )

    def _restage(self, parent: SessionDoc, step: int, hybrid: HybridSpec) -> list[StageInfo]:
        """The stages of a fork that changes the hybrid schedule from ``step`` on.

        The steps before ``step`` are the parent's history: the new stages must run them
        with the same models and guidance.
        """
        resolved = [
            resolve_stage(self.plugins, st, parent.model.name, parent.model.variant, hybrid.tiny)
            for st in hybrid.stages
        ]
        refs = [r for r, _ in resolved]
        check_latent_spaces([self.resolve(parent.model.name, parent.model.variant, parent.model.weights), *refs])
        for ref in refs:
            self._check_stages(ref)
        ends = end_steps(
            hybrid.unit, hybrid.boundaries, parent.total_steps, parent.timesteps or None, parent.sigmas or None
        )
        if ends is None:
            raise InputError("schedule", f"session {parent.id} has not started: its timesteps are not known yet")
        new = [
            StageInfo(
                model=self._model_info(ref),
                guidance=hybrid.stages[i].guidance,
                boundary=hybrid.boundaries[i] if i < len(hybrid.boundaries) else None,
                end_step=ends[i],
            )
            for i, ref in enumerate(refs)
        ]
        old = parent.stages or [StageInfo(model=parent.model, end_step=parent.total_steps)]

        def runner(stages: list[StageInfo], i: int) -> tuple[Any, ...]:
            st = next(st for st in stages if i < (st.end_step or 0))
            return (st.model.name, st.model.variant, st.model.weights, st.guidance)

        for i in range(step):
            if runner(new, i) != runner(old, i):
                raise InputError(
                    "schedule",
                    f"step {i} ran {'/'.join(map(str, runner(old, i)[:2]))} in session {parent.id}; a fork at step "
                    f"{step} may change only the stages from there on (the steps before it are its history)",
                )
        return new

    def check_fork(
        self, parent_id: str, step: int, overrides: dict[str, Any] | None = None, hybrid: HybridSpec | None = None
    ) -> ForkPlan:
        """Everything :meth:`fork` checks, before any write: the parent, the step (one
        with a checkpoint, after the parent's own fork point), the overrides (no fixed
        field changed) and, with ``hybrid``, the new stages. The API checks a fork job
        with it before queueing it."""
        parent = self.store.load_doc(parent_id)
        ref, params, overrides = self._with_overrides(parent, overrides)
        total = parent.total_steps
        if not isinstance(step, int) or not 0 <= step < total:
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
        stages = self._restage(parent, step, hybrid) if hybrid is not None else None
        return ForkPlan(parent, ref, params, overrides, at, stages)

    def fork(
        self, parent_id: str, step: int, overrides: dict[str, Any] | None = None, hybrid: HybridSpec | None = None
    ) -> Session:
        """A new session that continues ``parent_id`` from its checkpoint at ``step``.

        ``overrides`` may change any parameter but those fixing the schedule or the
        latent shape (``fixed_fields``); a new seed reseeds the noise drawn from then on.
        ``hybrid`` hands the steps from ``step`` on to other stage models (a fork at a
        hand-off with another second-stage model). The child shares the parent's
        checkpoint at ``step`` (a hard link, no copy) and runs only the remaining
        steps. Nothing is computed here.
        """
        plan = self.check_fork(parent_id, step, overrides, hybrid)
        parent, ref, params, overrides, at = plan.parent, plan.ref, plan.params, plan.overrides, plan.at
        doc = self._child_doc(parent, params, Operation.FORK, step, overrides)
        if hybrid is not None:
            assert plan.stages is not None
            doc.stages = plan.stages
            doc.schedule_name, doc.boundary_unit = hybrid.name, hybrid.unit
            doc.overrides = {**overrides, "stages": " > ".join(f"{s.model.name}/{s.model.variant}" for s in doc.stages)}
        # Only the fork point is shared: the parent's earlier checkpoints were reached with the
        # parent's parameters, so a fork of this fork before step k could not reproduce it.
        reseed = "seed" in overrides and overrides["seed"] != parent.params.get("seed")
        if not reseed:
            doc.checkpoints.append(self.store.share_file(parent.id, at, doc.id))
        else:
            # The fork point itself with the new seed: fresh noise from here on differs.
            tensors, metadata = self.store.read_tensors(parent.id, at)
            tensors["rng.generator"] = torch.Generator("cpu").manual_seed(params.seed).get_state()
            metadata[DOC_COPY_KEY] = doc.model_dump_json(exclude={"checkpoints"})
            record = self.store.write_tensors(doc.id, at.file, tensors, metadata)
            doc.checkpoints.append(CheckpointRecord(step=step, **record.model_dump()))
        if parent.edit is not None and parent.edit.tensors is not None:
            # A fork of a masked edit goes on blending the same source back outside the mask.
            doc.edit = parent.edit.model_copy(
                update={"tensors": self.store.share_file(parent.id, parent.edit.tensors, doc.id)}
            )
        changed = {k for k, v in params.model_dump().items() if parent.params.get(k) != v}
        if not changed - NON_CONDITIONING:
            self._share_conditioning(parent, doc)
        self.store.save_doc(doc)
        return Session(doc=doc, ref=ref, params=params, step_index=step, stages=self._stages_of(doc, params))

    def autoregressive(self, model: str) -> bool:
        """Whether ``model`` makes its video a block at a time (it extends and rewinds)."""
        return self.plugins.implements("arc_extend_params", model)  # as capabilities() says

    def check_extension(
        self, parent_id: str, blocks: int, prompt: str | None = None
    ) -> tuple[SessionDoc, ModelRef, Any, list[int], dict[str, Any]]:
        """Everything :meth:`extend` checks, before any compute or write: the parent, its
        model, the new parameters and passes, and the overrides that made them."""
        if not isinstance(blocks, int) or blocks < 1:
            raise InputError("blocks", f"must be a whole number of blocks, at least 1; got {blocks!r}")
        parent = self.store.load_doc(parent_id)
        ref = self.resolve(parent.model.name, parent.model.variant, parent.model.weights)
        hook = self.plugins.optional_stage("arc_extend_params", ref.spec.name)
        if hook is None:
            raise SessionError(f"{ref.spec.name} is not an autoregressive model; only those extend")
        if parent.final is None:
            raise SessionError(
                f"session {parent.id} is {parent.status.value}: only a finished session extends (resume it first)"
            )
        if parent.stages:
            raise SessionError(f"session {parent.id} runs a hybrid schedule; those do not extend")
        overrides = hook(model=ref, params=ref.params(parent.params), blocks=blocks, prompt=prompt)
        params = ref.params({**parent.params, **overrides})
        passes = self._passes(ref, params)
        old = parent.passes or [parent.total_steps]
        if passes[: len(old)] != old:
            raise ArcFabricError(
                f"{ref.spec.name}: arc_extend_params made passes {passes} that do not begin with the parent's {old}"
            )
        return parent, ref, params, passes, overrides

    def extend(self, parent_id: str, blocks: int, prompt: str | None = None) -> Session:
        """A finished autoregressive session made ``blocks`` blocks longer (with ``prompt``
        from the first new block on, when given): a new session that holds the parent's
        video and runs only the new blocks. Nothing is computed here; the run starts at the
        parent's last step, and the model rebuilds its state (the KV cache) from the
        parent's latents, so the result is what generating the longer video at once gives.
        """
        parent, ref, params, passes, overrides = self.check_extension(parent_id, blocks, prompt)
        doc = SessionDoc(
            model=parent.model,
            params=params.model_dump(),
            device=str(self.device),
            dtype=self.dtype,
            total_steps=sum(passes),
            passes=passes if len(passes) > 1 else [],
            step_index=parent.total_steps,
            operation=Operation.EXTEND,
            parent=parent.id,
            parent_step=parent.total_steps,
            overrides=overrides,
        )
        doc.extends = self.store.share_file(parent.id, parent.final, doc.id)
        changed = {k for k, v in params.model_dump().items() if parent.params.get(k) != v}
        if not changed - NON_CONDITIONING - set(ref.spec.params.fixed_fields):
            self._share_conditioning(parent, doc)
        self.store.save_doc(doc)
        return Session(doc=doc, ref=ref, params=params, step_index=parent.total_steps)

    def rewind(
        self, session_id: str, block: int, prompt: str | None = None, overrides: dict[str, Any] | None = None
    ) -> Session:
        """An autoregressive session rewound to ``block``: a fork at the block's first step
        that makes the blocks from there on again (under ``prompt`` from that block on,
        when given) — the autoregressive form of an edit, without regenerating the past."""
        step, changes = self.check_rewind(session_id, block, prompt, overrides)
        return self.fork(session_id, step, changes)

    def check_rewind(
        self, session_id: str, block: int, prompt: str | None = None, overrides: dict[str, Any] | None = None
    ) -> tuple[int, dict[str, Any]]:
        """What :meth:`rewind` checks, before any write: the fork step and its overrides."""
        doc = self.store.load_doc(session_id)
        ref = self.resolve(doc.model.name, doc.model.variant, doc.model.weights)
        hook = self.plugins.optional_stage("arc_rewind_params", ref.spec.name)
        if hook is None:
            raise SessionError(f"{ref.spec.name} is not an autoregressive model; only those rewind")
        passes = doc.passes or [doc.total_steps]
        if not isinstance(block, int) or not 0 <= block < len(passes):
            raise InputError("block", f"session {doc.id} has blocks 0..{len(passes) - 1}, got {block!r}")
        changes = {**hook(model=ref, params=ref.params(doc.params), block=block, prompt=prompt), **(overrides or {})}
        step = sum(passes[:block])
        self._with_overrides(doc, changes)
        if not any(c.step == step for c in doc.checkpoints):
            raise InputError("block", f"session {doc.id} has no checkpoint at block {block}'s first step ({step})")
        self.check_fork(session_id, step, changes)  # and the rest of what the fork checks
        return step, changes

    def _share_conditioning(self, parent: SessionDoc, doc: SessionDoc) -> None:
        """Link the parent's encoded prompts into ``doc`` for every stage model both run."""
        if parent.conditioning is not None:
            doc.conditioning = self.store.share_file(parent.id, parent.conditioning, doc.id)
        encoded: dict[tuple[Any, ...], Any] = {}
        for st in parent.stages:
            if st.conditioning is not None:
                encoded.setdefault((st.model.name, st.model.variant, st.model.weights), st.conditioning)
        for st in doc.stages:
            record = encoded.pop((st.model.name, st.model.variant, st.model.weights), None)
            if record is not None:
                st.conditioning = self.store.share_file(parent.id, record, doc.id)

    def check_edit(
        self,
        source_id: str,
        step: int | None = None,
        strength: float | None = None,
        overrides: dict[str, Any] | None = None,
        mask: EditMask | None = None,
    ) -> EditPlan:
        """Everything :meth:`edit` checks, before any compute or write: the model (not an
        autoregressive one), the overrides, the start step (from ``step`` or ``strength``,
        inside the last pass), a source to edit and the mask. The API checks an edit job
        with it before queueing it."""
        parent = self.store.load_doc(source_id)
        if self.autoregressive(parent.model.name):
            # Re-noising the whole video to one level has no meaning when every block has
            # its own schedule; remaking from a block on is the autoregressive edit.
            raise SessionError(
                f"{parent.model.name} makes its video a block at a time: rewind it to a block instead of editing"
            )
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
        last_pass = sum(parent.passes[:-1])
        if step < last_pass:
            raise InputError(
                "step",
                f"session {parent.id} denoises in passes of {parent.passes} steps; an edit re-runs part of its last "
                f"pass (the one at the video's size): start at a step in {last_pass}..{total - 1}",
            )
        mask = mask or EditMask()
        if parent.final is None and not parent.checkpoints:
            raise InputError("session", f"session {parent.id} has not run a step yet: there is nothing to edit")
        # The grid of the latents edited, from the file's header (no compute): a multi-pass
        # model's last pass may run at another size than the video's.
        source_record = parent.final or parent.checkpoints[-1]
        grid = self.store.tensor_shape(parent.id, source_record, "latents")[-3:]
        region = latent_mask(mask, params, ref.latent_space, grid=(grid[0], grid[1], grid[2]))
        return EditPlan(parent, ref, params, overrides, step, mask, region)

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
        plan = self.check_edit(source_id, step, strength, overrides, mask)
        parent, ref, params, overrides = plan.parent, plan.ref, plan.params, plan.overrides
        step, mask, region, total = plan.step, plan.mask, plan.region, plan.parent.total_steps

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
        return Session(doc=doc, ref=ref, params=params, step_index=step, stages=self._stages_of(doc, params))

    def clean_estimate(self, session_id: str, step: int | None = None) -> torch.Tensor:
        """The clean video a session is heading for at its checkpoint at ``step`` (default:
        its last checkpoint).

        One model call: x0 = x_t - sigma_t * v for flow-matching schedules. At the end of
        a pass (a multi-scale model's low-resolution result) the latents are clean already.
        """
        session = self.open(session_id)
        if not session.doc.checkpoints:
            raise SessionError(f"session {session_id} has no checkpoint yet")
        if step is not None and not any(c.step == step for c in session.doc.checkpoints):
            have = ", ".join(str(c.step) for c in session.doc.checkpoints)
            raise InputError("step", f"session {session_id} has no checkpoint at step {step} (it has: {have})")
        with torch.no_grad():
            self._restore(session, writer=None, at=step)
            schedule = session.schedule
            assert schedule is not None and session.latents is not None
            index = session.step_index - session.pass_start(session.pass_index)
            if session.done or index >= len(schedule):
                return session.latents
            if not schedule.is_flow:
                raise SessionError(
                    f"session {session_id}: a clean estimate needs a flow-matching schedule; finish the session first"
                )
            stage_index = session.stage_of(session.step_index)
            components = self._components(session, stage_index)
            output = self._denoise(session, stage_index, components, writer=None)
            return schedule.predict_x0(output, index, session.latents)

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
        until_step = check_until(until, total)
        listeners = list(listeners)
        with self._run_lock(session):
            writer = CheckpointWriter(self.store, session.doc)
            try:
                with torch.no_grad():
                    if session.latents is None:
                        if session.doc.checkpoints:
                            self._restore(session, writer)
                        elif session.doc.operation is Operation.EDIT:
                            self._start_edit(session, writer)
                        elif session.doc.operation is Operation.EXTEND:
                            self._start_extension(session, writer)
                        else:
                            self._start(session, writer)
                    self._set_status(session, writer, SessionStatus.RUNNING)
                    self._loop(session, max(until_step, session.step_index), writer, listeners, stop)
                    if session.done:
                        self._finish(session, writer)
                    else:
                        self._set_status(session, writer, SessionStatus.PAUSED)
                    writer.flush()
            except BaseException as exc:
                status = SessionStatus.PAUSED if isinstance(exc, KeyboardInterrupt) else SessionStatus.FAILED
                error = None if status is SessionStatus.PAUSED else brief(f"{type(exc).__name__}: {exc}")
                # Record the outcome if the store still takes writes; the original error wins either way.
                with contextlib.suppress(SessionError):
                    self._set_status(session, writer, status, error)
                    writer.flush()
                raise
            finally:
                writer.close()
                self.cache.let_go(session.id)
                for value in session.model_state.values():
                    park = getattr(value, "park", None)
                    if callable(park):
                        park()
        return session

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

    def _hook(self, name: str, ref: ModelRef) -> Any:
        return self.plugins.stage(name, ref.spec.name)

    def _components(self, session: Session, stage_index: int) -> Any:
        """The warm components of a stage's model. Only this stage's model is held, so
        under a memory budget the model of a finished stage may go before this one loads."""
        stage = session.stages[stage_index]
        components = self.load(stage.ref, session.placement, holder=session.id, params=stage.params)
        session.placement = self.cache.placement_of(stage.ref, self.dtype)
        session.device = self.cache.device_of(stage.ref, self.dtype)
        return components

    def load(
        self,
        ref: ModelRef,
        device: str | torch.device | None = None,
        holder: str | None = None,
        params: GenerationParams | None = None,
    ) -> Any:
        """``ref``'s warm components, loaded by the cache on ``device`` (default: the
        engine's placement) with room for the activations a run with ``params`` needs."""
        margin = self.activation_bytes(ref, params) if params is not None else 0
        placement = device if device is not None else self.placement
        return self.cache.get(ref, placement, self.dtype, hold=[ref], holder=holder, margin=margin)

    def _conditioning(
        self, session: Session, stage_index: int, components: Any, writer: CheckpointWriter | None
    ) -> dict[str, torch.Tensor]:
        """A stage's encoded prompt: in memory, else from the store, else encoded now (and
        written, if a writer is given, so that a resume need not encode again)."""
        stage = session.stages[stage_index]
        key = stage.ref.key
        if key in session.stage_conditioning:
            return session.stage_conditioning[key]
        doc = session.doc
        # Stage 0's model keeps its prompt in doc.conditioning; another model in its first stage's record.
        first = next(i for i, st in enumerate(session.stages) if st.ref.key == key)
        owner_is_doc = key == session.stages[0].ref.key
        record = doc.conditioning if owner_is_doc else (doc.stages[first].conditioning if doc.stages else None)
        if record is not None:
            stored, _ = self.store.read_tensors(doc.id, record)
            cond = {k: v.to(session.device or self.device) for k, v in stored.items()}
        else:
            cond = hook_results.check_conditioning(
                self._plugin_name(stage.ref),
                self._hook("arc_encode", stage.ref)(model=stage.ref, components=components, params=stage.params),
            )
            if writer is not None:
                cpu = {k: v.detach().to("cpu", copy=True) for k, v in cond.items()}
                name = CONDITIONING_FILE if owner_is_doc else f"conditioning_stage{first}.safetensors"

                def write() -> None:
                    written = self.store.write_tensors(doc.id, name, cpu)
                    if owner_is_doc:
                        doc.conditioning = written
                    else:
                        doc.stages[first].conditioning = written

                writer.submit(write)
        session.stage_conditioning[key] = cond
        if owner_is_doc:
            session.conditioning = cond
        return cond

    def _denoise(
        self, session: Session, stage_index: int, components: Any, writer: CheckpointWriter | None
    ) -> torch.Tensor:
        """One model call at the current step by the stage's model."""
        stage = session.stages[stage_index]
        assert session.latents is not None
        output = self._hook("arc_denoise_step", stage.ref)(
            model=stage.ref,
            components=components,
            latents=session.latents,
            step=self._context(session),
            conditioning=self._conditioning(session, stage_index, components, writer),
            params=stage.params,
        )
        # A plugin's own Schedule subclass may step on part of the latents (LongLive: one block).
        like = session.latents if type(session.schedule) is Schedule else None
        return hook_results.check_model_output(self._plugin_name(stage.ref), output, like)

    def _plugin_name(self, ref: ModelRef) -> str:
        """The name of the plugin that owns ``ref``'s model (what a hook error names)."""
        return str(self.plugins.pm.get_name(self.plugins.owner(ref.spec.name)))

    def _initial_latents(self, session: Session, components: Any) -> torch.Tensor:
        """``arc_prepare_latents``, checked: floating ``(1, C, F, H, W)`` latents.

        Their exact shape is not held against the declared latent space: a checkpoint may
        bring a VAE of its own (a tiny one saved in a real variant's layout); what every
        later stage must match is these latents (the model output) and the requested
        video (the decoded frames)."""
        ref = session.ref
        latents = self._hook("arc_prepare_latents", ref)(
            model=ref, components=components, params=session.params, generator=session.generator
        )
        return hook_results.check_latents(self._plugin_name(ref), "arc_prepare_latents", latents).to(torch.float32)

    def _start(self, session: Session, writer: CheckpointWriter) -> None:
        components = self._components(session, 0)
        self._conditioning(session, 0, components, writer)
        self._plan_schedule(session, components, session.ref, writer)
        session.generator = torch.Generator("cpu").manual_seed(session.params.seed)
        session.latents = self._initial_latents(session, components)
        self._checkpoint(session, writer)

    def _plan_schedule(
        self, session: Session, components: Any, ref: ModelRef, writer: CheckpointWriter, first_pass: int = 0
    ) -> None:
        """Build every pass's schedule once (with ``ref``'s components): record the
        timesteps, place the stage boundaries that wait for them, and keep
        ``first_pass``'s fresh schedule."""
        schedules = [self._new_schedule(session, components, ref, p) for p in range(len(session.passes))]
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

        writer.submit(write)

    def _start_edit(self, session: Session, writer: CheckpointWriter) -> None:
        """The edit's first state: the source re-noised to the level of its start step."""
        info = session.doc.edit
        assert info is not None and info.tensors is not None
        # The model of the stage the edit starts in: the models of earlier stages are not needed.
        stage_index = session.stage_of(info.start_step)
        components = self._components(session, stage_index)
        ref = session.stages[stage_index].ref
        self._plan_schedule(session, components, ref, writer, first_pass=session.pass_of(info.start_step))
        assert session.schedule is not None
        index = info.start_step - session.pass_start(session.pass_index)
        session.schedule.start_at(index)
        tensors = self._load_edit(session)
        session.generator = torch.Generator("cpu")
        session.generator.set_state(tensors["rng.generator"])
        device = session.device or self.device
        x0, noise = tensors["x0"].to(device), tensors["noise"].to(device)
        session.latents = session.schedule.add_noise(x0, noise, index).to(torch.float32)
        session.step_index = info.start_step
        self._checkpoint(session, writer)

    def _start_extension(self, session: Session, writer: CheckpointWriter) -> None:
        """An extension's first state: the parent's video, then the new frames' first noise."""
        doc = session.doc
        assert doc.extends is not None
        components = self._components(session, 0)
        self._conditioning(session, 0, components, writer)
        self._plan_schedule(session, components, session.ref, writer, first_pass=session.pass_of(doc.step_index))
        session.generator = torch.Generator("cpu").manual_seed(session.params.seed)
        fresh = self._initial_latents(session, components)
        made, _ = self.store.read_tensors(doc.id, doc.extends)
        old = made[LATENTS_KEY].to(fresh.device, torch.float32)
        session.latents = torch.cat([old, fresh[:, :, old.shape[2] :]], dim=2)
        session.step_index = doc.step_index
        self._checkpoint(session, writer)

    def _load_edit(self, session: Session) -> dict[str, torch.Tensor]:
        info = session.doc.edit
        assert info is not None and info.tensors is not None
        tensors, _ = self.store.read_tensors(session.id, info.tensors)
        if "mask" in tensors:
            device = session.device or self.device
            session.blend = Blend(
                x0=tensors["x0"].to(device),
                noise=tensors["noise"].to(device),
                mask=tensors["mask"].to(device),
            )
        return tensors

    def _new_schedule(self, session: Session, components: Any, ref: ModelRef, pass_index: int) -> Schedule:
        schedule = self._hook("arc_schedule", ref)(
            model=ref, components=components, params=session.params, pass_index=pass_index
        )
        expected = session.passes[pass_index]
        if not isinstance(schedule, Schedule):
            raise hook_results.PluginResultError(
                self._plugin_name(ref),
                "arc_schedule",
                "a Schedule (arc_fabric_core.contract.schedule)",
                hook_results.describe(schedule),
            )
        if len(schedule) != expected:
            raise SessionError(
                f"{ref.label}: arc_schedule gave {len(schedule)} timesteps for the {expected} steps "
                f"of pass {pass_index}"
            )
        start = session.pass_start(pass_index)
        stored = session.doc.timesteps[start : start + expected]
        if stored and [float(t) for t in schedule.timesteps] != stored:
            raise SessionError(
                f"session {session.id}: the schedule of {ref.label} does not match the stored one (a parameter, "
                "the plugin or the stage model changed how timesteps are made); the session cannot continue exactly"
            )
        return schedule

    @staticmethod
    def _context(session: Session) -> StepContext:
        schedule = session.schedule
        assert schedule is not None
        index = session.step_index - session.pass_start(session.pass_index)
        sigmas = schedule.sigmas
        return StepContext(
            index=index,
            total=len(schedule),
            timestep=schedule.timesteps[index],
            sigma=float(sigmas[index]) if sigmas is not None else None,
            pass_index=session.pass_index,
            state=session.model_state,
        )

    def _enter_next_pass(self, session: Session) -> None:
        """At the end of a pass, make the next pass's first latents (the model of the
        stage that runs the next step does it: upsample, re-noise, ...)."""
        stage_index = session.stage_of(session.step_index)
        ref = session.stages[stage_index].ref
        components = self._components(session, stage_index)
        next_pass = session.pass_index + 1
        schedule = self._new_schedule(session, components, ref, next_pass)
        latents = self._hook("arc_next_pass", ref)(
            model=ref,
            components=components,
            latents=session.latents,
            pass_index=next_pass,
            schedule=schedule,
            params=session.stages[stage_index].params,
            generator=session.generator,
        )
        latents = hook_results.check_latents(self._plugin_name(ref), "arc_next_pass", latents)
        session.latents = latents.to(session.device or self.device).to(torch.float32)
        session.schedule, session.pass_index = schedule, next_pass

    def _loop(
        self,
        session: Session,
        until: int,
        writer: CheckpointWriter,
        listeners: list[Listener],
        stop: Callable[[], bool] | None = None,
    ) -> None:
        assert session.latents is not None
        started, done_before = time.perf_counter(), session.step_index
        boundaries = session.boundaries()
        while session.step_index < until:
            i = session.step_index
            t0 = time.perf_counter()
            assert session.schedule is not None
            if i - session.pass_start(session.pass_index) >= len(session.schedule):
                self._enter_next_pass(session)
            schedule = session.schedule
            stage_index = session.stage_of(i)
            components = self._components(session, stage_index)
            ctx = self._context(session)
            output = self._denoise(session, stage_index, components, writer)
            session.latents = schedule.step(output, ctx.index, session.latents, session.generator)
            if session.blend is not None:
                session.latents = session.blend.apply(session.latents, schedule, ctx.index + 1)
            if not bool(torch.isfinite(session.latents).all()):
                self._non_finite(session, i + 1, writer)
            session.step_index = i + 1
            step = session.step_index
            if self.checkpoint_every and (step % self.checkpoint_every == 0 or session.done or step in boundaries):
                self._checkpoint(session, writer)
            now = time.perf_counter()
            event = StepEvent(
                session_id=session.id,
                step=step,
                total=session.doc.total_steps,
                timestep=float(ctx.timestep),
                step_seconds=now - t0,
                elapsed_seconds=now - started,
                first_step=done_before,
                latents=session.latents,
                frames=session.model_state.pop(DECODED_FRAMES, None),
            )
            for listener in listeners:
                listener(event)
            if stop is not None and not session.done and stop():
                if self.checkpoint_every and step % self.checkpoint_every and step not in boundaries:
                    self._checkpoint(session, writer)  # pause exactly here, not at the last checkpoint
                return

    def _non_finite(self, session: Session, step: int, writer: CheckpointWriter) -> None:
        """Stop a run whose latents turned NaN or infinite at ``step``: nothing of that
        step is checkpointed, so the newest checkpoint stays the last finite state."""
        writer.flush()  # the checkpoints queued before this step are on disk: name the newest
        doc = session.doc
        last = doc.checkpoints[-1].step if doc.checkpoints else None
        where = (
            f"its newest checkpoint (step {last}) is the last finite state: resume from it, or fork it with "
            "other parameters"
            if last is not None
            else "it has no checkpoint to resume from"
        )
        raise SessionError(f"session {doc.id}: the latents became non-finite (NaN or inf) at step {step}; {where}")

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
            "pass": str(session.pass_index),
            "scheduler_state": sched_json,
            "scheduler_class": type(session.schedule.scheduler).__name__,
            "scheduler_config": _config_json(session.schedule.scheduler),
        }
        doc, keep, keep_steps = session.doc, self.checkpoint_keep, self.checkpoint_keep_steps
        # A fork or edit always keeps its first own checkpoint: it is where the branch starts;
        # hand-offs are kept too, so that a fork can give the rest to another model.
        keep_steps = keep_steps | {doc.parent_step or 0} | session.boundaries()

        def write() -> list[str]:
            # A copy of the document rides along: `sessions repair` rebuilds a damaged one from it.
            copy = {DOC_COPY_KEY: doc.model_dump_json(exclude={"checkpoints"})}
            record = self.store.write_tensors(doc.id, checkpoint_name(step), tensors, {**metadata, **copy})
            doc.step_index = step
            return add_checkpoint(doc, record, step, keep, keep_steps)  # removed once the doc is saved

        writer.submit(write)

    def _restore(self, session: Session, writer: CheckpointWriter | None, at: int | None = None) -> None:
        """Rebuild the loop state from the newest checkpoint whose checksum holds (or the one at step ``at``)."""
        doc = session.doc
        bad: list[int] = []
        first_error = ""
        records = doc.checkpoints if at is None else [c for c in doc.checkpoints if c.step == at]
        for record in reversed(records):
            try:
                tensors, metadata = self.store.read_tensors(doc.id, record)
                break
            except SessionError as exc:
                bad.append(record.step)
                first_error = first_error or str(exc)
        else:
            if not bad:
                raise SessionError(f"session {doc.id}: no readable checkpoint")
            raise SessionError(f"{_lost(doc.id, bad, first_error)}; no usable checkpoint is left")
        if bad:
            log.warning("%s; resuming from step %s", _lost(doc.id, bad, first_error), metadata["step"])
        step = int(metadata["step"])
        pass_index = int(metadata.get("pass", "0"))
        session.model_state.clear()  # made for other latents: the plugin rebuilds it
        # The model of the stage at this step rebuilds the schedule: a resume after a
        # hand-off never loads the models of finished stages.
        stage_index = session.stage_of(min(step, doc.total_steps - 1))
        ref = session.stages[stage_index].ref
        components = self._components(session, stage_index)
        session.schedule = self._new_schedule(session, components, ref, pass_index)
        config = metadata.get("scheduler_config")
        if config is not None and not _same_config(config, _config_json(session.schedule.scheduler)):
            raise SessionError(
                f"session {doc.id}: {ref.label} builds its scheduler with another configuration than the one "
                f"checkpointed at step {step}; the session cannot continue exactly"
            )
        device = session.device or self.device
        restore(session.schedule.scheduler, tensors, metadata["scheduler_state"], device)
        session.pass_index = pass_index
        session.latents = tensors["latents"].to(device)
        session.generator = torch.Generator("cpu")
        session.generator.set_state(tensors["rng.generator"])
        torch.set_rng_state(tensors["rng.torch_cpu"])
        session.step_index = step
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
        self.check_resume(session_id, until)
        return self.run(self.open(session_id), until=until, listeners=listeners, stop=stop)

    def check_resume(self, session_id: str, until: int | None = None) -> SessionDoc:
        """What :meth:`resume` checks, before any load: a session not finished yet, and
        ``until`` within its steps (what :meth:`run` refuses). The API checks a resume job
        with it before queueing it."""
        doc = self.store.load_doc(session_id)
        if doc.final is not None:
            raise SessionError(f"session {session_id} is already finished; fork or edit it instead")
        check_until(until, doc.total_steps)
        return doc

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
        frames in [0, 1], with the model of the stage that made them.

        A plugin whose decode breaks its contract fails here, in one line; if it was
        decoding the final video, the session is marked failed (its latents stay: decode
        it again once the plugin is fixed)."""
        final = latents is None or step == session.doc.total_steps
        latents = latents if latents is not None else session.latents
        if latents is None:
            latents = self.final_latents(session)
        made_at = (step if step is not None else session.doc.total_steps) - 1
        try:
            stage = session.stages[session.stage_of(max(made_at, 0))]
        except SessionError:
            stage = session.stages[0]
        components = self.load(stage.ref, session.placement)
        device = self.cache.device_of(stage.ref, self.dtype)
        with self._decode_locks_guard:
            decoding = self._decode_locks.setdefault(id(components), threading.Lock())
        with decoding, torch.no_grad():
            frames = self._hook("arc_decode", stage.ref)(
                model=stage.ref, components=components, latents=latents.to(device), params=stage.params
            )
        p = session.params
        try:
            hook_results.check_frames(
                self._plugin_name(stage.ref), frames, (p.num_frames, p.height, p.width) if final else None
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

    def delete(self, session_id: str) -> int:
        """Delete a session (refused while it runs); children keep the files they share."""
        return self.store.delete(session_id)


def _lost(session_id: str, steps: list[int], newest_error: str) -> str:
    """Unreadable checkpoints in one line: the store's reason for one, else their steps as
    ranges ([16, 15, 14, 3] -> 3, 14-16) and the newest one's reason — a store that lost
    its files would otherwise repeat the same reason once per file."""
    if len(steps) == 1:
        return newest_error
    text = step_ranges(steps)
    reason = newest_error.removeprefix(f"session {session_id}: ")
    return f"session {session_id}: the checkpoints at steps {text} are missing or corrupt (the newest: {reason})"


def _same_value(schema: type[GenerationParams], key: str, value: Any, current: Any) -> bool:
    """Whether ``value`` for field ``key`` is ``current`` once typed (``3`` is ``3.0``)."""
    from pydantic import TypeAdapter, ValidationError

    try:
        typed = TypeAdapter(schema.model_fields[key].annotation).validate_python(value)
    except ValidationError:
        return False
    return bool(typed == current)


def check_until(until: int | None, total: int) -> int:
    """The step a run stops at: ``until`` (default: the end), refused outside 0..``total``."""
    until_step = total if until is None else until
    if not isinstance(until_step, int) or not 0 <= until_step <= total:
        raise InputError("until", f"must be between 0 and {total} steps, got {until_step}")
    return until_step


def _config_json(scheduler: Any) -> str:
    """A scheduler's configuration as canonical JSON (what a stage model must agree on).

    diffusers' bookkeeping keys (``_use_default_values``, ``_class_name``...) are left
    out: the first is a set turned list, in an order that changes from process to process.
    """
    config = getattr(scheduler, "config", None)
    public = {k: v for k, v in dict(config).items() if not k.startswith("_")} if config is not None else {}
    return json.dumps(public, sort_keys=True, default=str)


def _same_config(stored: str, current: str) -> bool:
    """Whether a checkpointed scheduler configuration (possibly written with the
    bookkeeping keys) is the one ``current`` describes."""
    try:
        old = {k: v for k, v in json.loads(stored).items() if not k.startswith("_")}
    except (ValueError, AttributeError):
        return False
    return json.dumps(old, sort_keys=True, default=str) == current
