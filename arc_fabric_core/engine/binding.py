"""Binding stage models for a run: components from the model cache, conditioning from
the store (or encoded once), the session's inputs beside text, and the plugin's stage
hooks — what the loop is given.

A session's stages bind one at a time, when their first step comes: under a memory
budget the model of a finished stage may go before the next one loads.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from arc_fabric_core.contract.errors import SessionError
from arc_fabric_core.contract.inputs import chunk_inputs
from arc_fabric_core.contract.models import ModelRef
from arc_fabric_core.contract.params import GenerationParams
from arc_fabric_core.contract.schedule import Schedule, StepContext
from arc_fabric_core.dispatch import hook_results
from arc_fabric_core.dispatch.plugins import Plugins
from arc_fabric_core.engine.state import Session
from arc_fabric_core.runtime.acceleration import StageSpeed
from arc_fabric_core.runtime.model_cache import ModelCache
from arc_fabric_core.store.files import CheckpointWriter, SessionStore

CONDITIONING_FILE = "conditioning.safetensors"


class Binder:
    """Everything a run needs from outside the loop: plugins, the model cache, the store."""

    def __init__(
        self,
        plugins: Plugins,
        cache: ModelCache,
        store: SessionStore,
        device: torch.device,
        placement: str | torch.device,
        dtype: str,
    ) -> None:
        self.plugins, self.cache, self.store = plugins, cache, store
        self.device, self.placement, self.dtype = device, placement, dtype

    def hook(self, name: str, ref: ModelRef) -> Any:
        return self.plugins.stage(name, ref.spec.name)

    def plugin_name(self, ref: ModelRef) -> str:
        """The name of the plugin that owns ``ref``'s model (what a hook error names)."""
        return str(self.plugins.pm.get_name(self.plugins.owner(ref.spec.name)))

    def activation_bytes(self, ref: ModelRef, params: GenerationParams) -> int:
        """What a run with ``params`` needs beside ``ref``'s weights, as its plugin
        declares it (``arc_activation_bytes``); 0 when it does not say."""
        hook = self.plugins.optional_stage("arc_activation_bytes", ref.spec.name)
        return int(hook(model=ref, params=params) or 0) if hook is not None else 0

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

    def components(self, session: Session, stage_index: int) -> Any:
        """The warm components of a stage's model, held for ``session``; the session's
        tensors live where its first model loaded."""
        stage = session.stages[stage_index]
        components = self.load(stage.ref, session.placement, holder=session.id, params=stage.params)
        session.placement = self.cache.placement_of(stage.ref, self.dtype)
        session.device = self.cache.device_of(stage.ref, self.dtype)
        return components

    def conditioning(
        self,
        session: Session,
        stage_index: int,
        components: Any,
        writer: CheckpointWriter | None,
        inputs: dict[str, torch.Tensor],
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
            encode = self.hook("arc_encode", stage.ref)
            cond = hook_results.check_conditioning(
                self.plugin_name(stage.ref),
                encode(model=stage.ref, components=components, params=stage.params, inputs=inputs),
            )
            if writer is not None:
                cpu = {k: v.detach().to("cpu", copy=True) for k, v in cond.items()}
                name = CONDITIONING_FILE if owner_is_doc else f"conditioning_stage{first}.safetensors"
                store = self.store

                def write() -> None:
                    written = store.write_tensors(doc.id, name, cpu)
                    if owner_is_doc:
                        doc.conditioning = written
                    else:
                        doc.stages[first].conditioning = written

                writer.submit(write)
        session.stage_conditioning[key] = cond
        if owner_is_doc:
            session.conditioning = cond
        return cond

    def inputs(self, session: Session, device: torch.device) -> dict[str, torch.Tensor]:
        """The session's inputs beside text on ``device`` (read from the store once)."""
        if session.inputs is None:
            session.inputs = self.store.read_inputs(session.doc)
        return {name: t.to(device) for name, t in session.inputs.items()}

    def stage(self, session: Session, stage_index: int, writer: CheckpointWriter | None) -> BoundStage:
        """Stage ``stage_index``'s model with its components, conditioning and inputs."""
        components = self.components(session, stage_index)
        stage = session.stages[stage_index]
        inputs = self.inputs(session, session.device or self.device)
        return BoundStage(
            binder=self,
            session=session,
            index=stage_index,
            ref=stage.ref,
            params=stage.params,
            components=components,
            conditioning=self.conditioning(session, stage_index, components, writer, inputs),
            device=session.device or self.device,
            inputs=inputs,
        )

    def models(self, session: Session, writer: CheckpointWriter | None) -> SessionModels:
        return SessionModels(self, session, writer)


@dataclass
class BoundStage:
    """One stage's model, bound: what the loop calls at each of its steps."""

    binder: Binder
    session: Session
    index: int
    ref: ModelRef
    params: GenerationParams
    components: Any
    conditioning: dict[str, torch.Tensor]
    device: torch.device
    inputs: dict[str, torch.Tensor] = field(default_factory=dict)

    @property
    def plugin(self) -> str:
        return self.binder.plugin_name(self.ref)

    def __post_init__(self) -> None:
        # Resolved once per bound stage: the dispatch (owner, interceptors, wrappers) is
        # the same for every step of it, and the loop calls it each step.
        self._denoise = self.binder.hook("arc_denoise_step", self.ref)
        # The attention kernel and compilation (runtime.acceleration); the backend a session
        # ran with is kept in its document, so that a resume runs the same one.
        backends = self.session.doc.attention_backends
        recorded = backends.get(self.ref.label)
        self._speed = StageSpeed(self.ref.label, self.components, self.params, self.device, recorded)
        backends[self.ref.label] = self._speed.backend

    def denoise(self, latents: torch.Tensor, step: StepContext) -> torch.Tensor:
        output = self._speed.run(
            lambda: self._denoise(
                model=self.ref,
                components=self.components,
                latents=latents,
                step=step,
                conditioning=self.conditioning,
                params=self.params,
                inputs=chunk_inputs(self.ref.spec.inputs, self.inputs, step.pass_index) if self.inputs else {},
            ),
            latents,
        )
        # A plugin's own Schedule subclass may step on part of the latents (LongLive: one block).
        like = latents if type(self.session.schedule) is Schedule else None
        return hook_results.check_model_output(self.plugin, output, like)

    def schedule(self, session: Session, pass_index: int) -> Schedule:
        """A fresh schedule of pass ``pass_index``, checked against the session's steps
        and the timesteps it has recorded."""
        schedule = self.binder.hook("arc_schedule", self.ref)(
            model=self.ref, components=self.components, params=session.params, pass_index=pass_index
        )
        expected = session.passes[pass_index]
        if not isinstance(schedule, Schedule):
            raise hook_results.PluginResultError(
                self.plugin, "arc_schedule", "a Schedule (arc_fabric_core.schedule)", hook_results.describe(schedule)
            )
        if len(schedule) != expected:
            raise SessionError(
                f"{self.ref.label}: arc_schedule gave {len(schedule)} timesteps for the {expected} steps "
                f"of pass {pass_index}"
            )
        start = session.pass_start(pass_index)
        stored = session.doc.timesteps[start : start + expected]
        if stored and [float(t) for t in schedule.timesteps] != stored:
            raise SessionError(
                f"session {session.id}: the schedule of {self.ref.label} does not match the stored one (a parameter, "
                "the plugin or the stage model changed how timesteps are made); the session cannot continue exactly"
            )
        return schedule

    def initial_latents(self, session: Session) -> torch.Tensor:
        """``arc_prepare_latents``, checked: floating ``(1, C, F, H, W)`` latents.

        Their exact shape is not held against the declared latent space: a checkpoint may
        bring a VAE of its own (a tiny one saved in a real variant's layout); what every
        later stage must match is these latents (the model output) and the requested
        video (the decoded frames)."""
        latents = self.binder.hook("arc_prepare_latents", self.ref)(
            model=self.ref,
            components=self.components,
            params=session.params,
            generator=session.generator,
            inputs=self.inputs,
        )
        return hook_results.check_latents(self.plugin, "arc_prepare_latents", latents).to(torch.float32)

    def enter_pass(self, session: Session, pass_index: int) -> tuple[torch.Tensor, Schedule]:
        """At the end of a pass, the next pass's first latents (upsample, re-noise, ...)
        and its schedule, made by the model of the stage that runs the next step."""
        schedule = self.schedule(session, pass_index)
        latents = self.binder.hook("arc_next_pass", self.ref)(
            model=self.ref,
            components=self.components,
            latents=session.latents,
            pass_index=pass_index,
            schedule=schedule,
            params=self.params,
            generator=session.generator,
        )
        latents = hook_results.check_latents(self.plugin, "arc_next_pass", latents)
        return latents.to(self.device).to(torch.float32), schedule


class SessionModels:
    """The stage models of one run, each bound when its first step comes (the loop's
    ``StageModels``)."""

    def __init__(self, binder: Binder, session: Session, writer: CheckpointWriter | None) -> None:
        self.binder, self.session, self.writer = binder, session, writer
        self._bound: BoundStage | None = None

    def stage(self, index: int) -> BoundStage:
        if self._bound is None or self._bound.index != index:
            self._bound = None  # let go of the finished stage's components before the next loads
            self._bound = self.binder.stage(self.session, index, self.writer)
        return self._bound

    @property
    def current(self) -> BoundStage | None:
        """The stage bound last (the one that ran the run's last step)."""
        return self._bound

    def at(self, step: int) -> BoundStage:
        return self.stage(self.session.stage_of(step))
