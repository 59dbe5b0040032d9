"""Planning a session before anything runs: its stages, passes and steps, checked
against the plugins and the devices' memory — arithmetic on the parameters, no load."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from arc_fabric_core.contract.errors import InputError, SessionError
from arc_fabric_core.contract.inputs import Sourced, check_inputs
from arc_fabric_core.contract.models import ModelRef
from arc_fabric_core.contract.params import GenerationParams
from arc_fabric_core.dispatch.plugins import OPTIONAL_STAGE_HOOKS, STAGE_HOOKS, Plugins
from arc_fabric_core.engine.binding import Binder
from arc_fabric_core.engine.hybrid import HybridSpec, check_latent_spaces, end_steps, resolve_stage
from arc_fabric_core.engine.state import Session, Stage
from arc_fabric_core.runtime.acceleration import check_attention
from arc_fabric_core.runtime.memory_fit import check_fits, working_floor
from arc_fabric_core.store.files import SessionStore
from arc_fabric_core.store.session import ModelInfo, SessionDoc, StageInfo


def model_info(ref: ModelRef) -> ModelInfo:
    weights = str(ref.weights) if ref.weights else None
    return ModelInfo(name=ref.spec.name, variant=ref.variant.name, weights=weights)


def resolve(plugins: Plugins, model: str, variant: str | None = "auto", weights: str | None = None) -> ModelRef:
    return plugins.model(model).resolve(variant, weights)


def resolve_info(plugins: Plugins, info: ModelInfo) -> ModelRef:
    return resolve(plugins, info.name, info.variant, info.weights)


def check_stages(plugins: Plugins, ref: ModelRef) -> None:
    """A plugin missing a stage hook fails here, before anything is written, not mid-run."""
    for stage in STAGE_HOOKS:
        plugins.stage(stage, ref.spec.name)
    for optional, needs in OPTIONAL_STAGE_HOOKS.items():
        if plugins.optional_stage(optional, ref.spec.name) is not None:
            for hook in needs:
                plugins.stage(hook, ref.spec.name)


def check_cache(plugins: Plugins, refs: list[ModelRef], params: GenerationParams) -> None:
    """A step cache (``params.cache``) needs a plugin that implements it, and a model that
    takes one (``ModelSpec.step_cache_refusal``): refused here, before anything loads."""
    cache = getattr(params, "cache", None)
    if cache is None:
        return
    offered = plugins.caches()
    if cache.name not in offered:
        known = ", ".join(offered) or "none"
        raise InputError(
            "cache",
            f"{cache.name!r} needs a plugin that implements it, and none loaded does (the core's own, "
            f"arc_fabric_core.runtime.step_caches, loads with the installed plugins); step caches loaded: {known}",
        )
    for ref in refs:
        if ref.spec.step_cache_refusal:
            raise InputError("cache", f"{ref.label} takes no step cache: {ref.spec.step_cache_refusal}")


def stage_params(ref: ModelRef, params: GenerationParams, guidance: float | None) -> GenerationParams:
    """A stage's parameters: the session's (those its model knows), its own guidance."""
    fields = ref.spec.params.model_fields
    values = {k: v for k, v in params.model_dump().items() if k in fields}
    if guidance is not None:
        values["guidance"] = guidance
    try:
        return ref.params(values)
    except InputError as exc:
        raise InputError(f"schedule.stages ({ref.label}): {exc.field}", exc.message) from None


def passes_of(plugins: Plugins, ref: ModelRef, params: GenerationParams) -> list[int]:
    """The steps of each pass (``arc_passes``; one pass of ``params.steps`` without it)."""
    hook = plugins.optional_stage("arc_passes", ref.spec.name)
    passes = hook(model=ref, params=params) if hook is not None else None
    if not passes:
        return [params.steps]
    if any(int(n) < 1 for n in passes):
        raise SessionError(f"{ref.label}: arc_passes gave a pass without steps: {passes}")
    return [int(n) for n in passes]


def check_stage_inputs(refs: list[ModelRef]) -> None:
    """The stage models of one schedule take the same inputs beside text: each of them is
    given the session's."""
    first = refs[0]
    names = [spec.name for spec in first.spec.inputs]
    for i, ref in enumerate(refs[1:], start=1):
        other = [spec.name for spec in ref.spec.inputs]
        if sorted(other) != sorted(names):
            raise InputError(
                "schedule.stages",
                f"stage {i} ({ref.label}) takes the inputs [{', '.join(other)}], {first.label} takes "
                f"[{', '.join(names)}]: the models of one schedule must take the same inputs beside text",
            )


def check_memory(binder: Binder, stages: list[Stage]) -> None:
    """Refuse a size whose working memory no device here could hold (before anything
    is written, queued or loaded: the estimates are arithmetic on the sizes)."""
    devices = binder.cache.every_device()
    for stage in stages:
        need = binder.activation_bytes(stage.ref, stage.params)
        check_fits(stage.ref, stage.params, need or working_floor(stage.ref, stage.params), devices)


def plan(
    binder: Binder,
    model: str | ModelRef,
    params: dict[str, Any],
    variant: str | None,
    weights: str | None,
    hybrid: HybridSpec | None,
    device: torch.device,
    dtype: str,
    inputs: Mapping[str, Any] | None = None,
) -> Session:
    """A new session, checked and built in memory; nothing written. With ``hybrid`` the
    stages of the schedule run the steps; a stage naming no model runs ``model`` and one
    naming no variant runs ``variant``. ``inputs``: its inputs beside text by name
    (tensors, lists or file paths; ``contract.inputs``), checked against the model's."""
    plugins = binder.plugins
    if hybrid is None:
        ref = model if isinstance(model, ModelRef) else resolve(plugins, model, variant, weights)
        resolved = [(ref, False)]
    else:
        name = model.spec.name if isinstance(model, ModelRef) else model
        default_variant = model.variant.name if isinstance(model, ModelRef) else variant
        resolved = [resolve_stage(plugins, st, name, default_variant, hybrid.tiny) for st in hybrid.stages]
        ref = resolved[0][0]
        check_latent_spaces([r for r, _ in resolved])
    checked = ref.params(params)
    check_attention(checked)
    passes = passes_of(plugins, ref, checked)
    total = sum(passes)
    stages = []
    for i, (stage_ref, stand_in) in enumerate(resolved):
        guidance = hybrid.stages[i].guidance if hybrid is not None else None
        params_i = stage_params(stage_ref, checked, guidance) if hybrid is not None else checked
        check_stages(plugins, stage_ref)
        if i and passes_of(plugins, stage_ref, params_i) != passes:
            raise InputError(
                "schedule.stages",
                f"stage {i} ({stage_ref.label}) denoises in passes {passes_of(plugins, stage_ref, params_i)}, "
                f"stage 0 ({ref.label}) in {passes}: the stages of one schedule must share its steps",
            )
        stages.append(Stage(stage_ref, params_i, end=None if hybrid else total, stand_in=stand_in))
    check_stage_inputs([st.ref for st in stages])
    check_cache(plugins, [st.ref for st in stages], checked)
    sourced = source_inputs(plugins, ref, checked, inputs)
    if sourced is not None:
        inputs = {**sourced.inputs, **(inputs or {})}
    checked_inputs = check_inputs(ref.spec.inputs, inputs, checked, len(passes), ref.spec.name)
    check_memory(binder, stages)
    doc = SessionDoc(
        model=model_info(ref),
        params=checked.stored(),
        device=str(device),
        dtype=dtype,
        total_steps=total,
        passes=passes if len(passes) > 1 else [],
    )
    if hybrid is not None:
        ends = end_steps(hybrid.unit, hybrid.boundaries, total, None)
        doc.schedule_name = hybrid.name
        doc.boundary_unit = hybrid.unit
        doc.stages = [
            StageInfo(
                model=model_info(st.ref),
                guidance=hybrid.stages[i].guidance,
                boundary=hybrid.boundaries[i] if i < len(hybrid.boundaries) else None,
                end_step=ends[i] if ends is not None else None,
            )
            for i, st in enumerate(stages)
        ]
        for st, info in zip(stages, doc.stages, strict=True):
            st.end = info.end_step
    session = Session(doc=doc, ref=ref, params=checked, stages=stages, inputs=checked_inputs)
    if sourced is not None:
        session.source_note, session.reference = sourced.note, sourced.reference
    return session


def source_inputs(
    plugins: Plugins, ref: ModelRef, params: GenerationParams, inputs: Mapping[str, Any] | None
) -> Sourced | None:
    """What the model's ``arc_source_inputs`` adds to the given inputs (None: nothing)."""
    hook = plugins.optional_stage("arc_source_inputs", ref.spec.name)
    if hook is None:
        return None
    sourced = hook(model=ref, params=params, inputs=dict(inputs or {}))
    if sourced is not None and not isinstance(sourced, Sourced):
        raise SessionError(f"{ref.spec.name}: arc_source_inputs returned {type(sourced).__name__}, not a Sourced")
    return sourced


def write_new(store: SessionStore, session: Session) -> None:
    """A planned session written: its inputs first, then the document that names them."""
    for name, tensor in (session.inputs or {}).items():
        session.doc.inputs[name] = store.write_input(session.doc.id, name, tensor)
    store.save_doc(session.doc)


def stages_of(plugins: Plugins, doc: SessionDoc, params: GenerationParams) -> list[Stage]:
    """The stages a stored document describes (one for a plain session)."""
    if not doc.stages:
        return [Stage(resolve_info(plugins, doc.model), params, doc.total_steps)]
    stages = []
    for info in doc.stages:
        ref = resolve_info(plugins, info.model)
        stages.append(Stage(ref, stage_params(ref, params, info.guidance), info.end_step))
    if stages[-1].end is None and all(st.end is not None for st in stages[:-1]):
        stages[-1].end = doc.total_steps
    return stages


def session_of(plugins: Plugins, doc: SessionDoc, step_index: int | None = None) -> Session:
    """A stored document as a session in memory (its tensors load when it runs)."""
    ref = resolve_info(plugins, doc.model)
    params = ref.params(doc.params)
    session = Session(doc=doc, ref=ref, params=params, stages=stages_of(plugins, doc, params))
    if step_index is None:
        step_index = doc.checkpoints[-1].step if doc.checkpoints else 0
    session.step_index = step_index
    return session
