"""What the operations that branch a session share: a child's document, overrides
checked against the fields a branch may change, and the encoded prompts it can share."""

from __future__ import annotations

from typing import Any

from pydantic import TypeAdapter, ValidationError

from arc_fabric_core.contract.errors import InputError
from arc_fabric_core.contract.models import ModelRef
from arc_fabric_core.contract.params import GenerationParams
from arc_fabric_core.contract.speed import SPEED_FIELDS
from arc_fabric_core.engine.planning import check_cache, check_stages, resolve_info
from arc_fabric_core.runtime.acceleration import check_attention
from arc_fabric_core.store.files import SessionStore
from arc_fabric_core.store.session import Operation, SessionDoc

# Overrides that leave the text conditioning as it is: a fork changing only these shares it
# (the speed settings change how the steps run, not what they are conditioned on).
NON_CONDITIONING = frozenset({"seed", "fps", *SPEED_FIELDS})


def with_overrides(
    engine: Any, parent: SessionDoc, overrides: dict[str, Any] | None
) -> tuple[ModelRef, Any, dict[str, Any]]:
    """The parent's model, its params with ``overrides``, and the overrides as validated.

    Refuses a change to a field that fixes the schedule or the latent shape.
    """
    ref = resolve_info(engine.plugins, parent.model)
    schema = ref.spec.params
    fixed = schema.fixed_fields
    # The video's own fields first; the speed settings (contract.speed) after.
    allowed = ", ".join(sorted(set(schema.model_fields) - fixed - set(SPEED_FIELDS)))
    allowed += f"; speed: {', '.join(sorted(SPEED_FIELDS))}"
    # Unknown and fixed fields first: the whole parameter set's own rules (a plugin's
    # "steps must match timesteps") would otherwise speak of a change that cannot happen.
    for key, value in (overrides or {}).items():
        if key not in schema.model_fields:
            raise InputError(key, f"unknown parameter of {ref.spec.name}; a fork or edit may change: {allowed}")
        if key in fixed and not same_value(schema, key, value, parent.params.get(key)):
            raise InputError(
                key,
                f"cannot be changed here (from {parent.params.get(key)!r} to {value!r}): it fixes the schedule "
                f"or the latent shape, which a fork or edit continues. Allowed: {allowed}; "
                "to change it, start a new session",
            )
    params = ref.params({**parent.params, **(overrides or {})})
    checked = {k: getattr(params, k) for k in overrides or {}}
    check_attention(params)
    check_stages(engine.plugins, ref)
    check_cache(engine.plugins, [ref], params)
    return ref, params, checked


def same_value(schema: type[GenerationParams], key: str, value: Any, current: Any) -> bool:
    """Whether ``value`` for field ``key`` is ``current`` once typed (``3`` is ``3.0``)."""
    try:
        typed = TypeAdapter(schema.model_fields[key].annotation).validate_python(value)
    except ValidationError:
        return False
    return bool(typed == current)


def child_doc(
    engine: Any, parent: SessionDoc, params: Any, operation: Operation, step: int, overrides: dict[str, Any]
) -> SessionDoc:
    """The document of a session branching from ``parent`` at ``step``: same model and schedule."""
    return SessionDoc(
        model=parent.model,
        params=params.stored(),
        device=str(engine.device),
        dtype=engine.dtype,
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


def share_conditioning(store: SessionStore, parent: SessionDoc, doc: SessionDoc) -> None:
    """Link the parent's encoded prompts into ``doc`` for every stage model both run."""
    if parent.conditioning is not None:
        doc.conditioning = store.share_file(parent.id, parent.conditioning, doc.id)
    encoded: dict[tuple[Any, ...], Any] = {}
    for st in parent.stages:
        if st.conditioning is not None:
            encoded.setdefault((st.model.name, st.model.variant, st.model.weights), st.conditioning)
    for st in doc.stages:
        record = encoded.pop((st.model.name, st.model.variant, st.model.weights), None)
        if record is not None:
            st.conditioning = store.share_file(parent.id, record, doc.id)


def changed_fields(parent: SessionDoc, params: Any) -> set[str]:
    # A speed setting left out of the parent's document is at its default.
    fields = type(params).model_fields
    before = {**{name: fields[name].default for name in SPEED_FIELDS if name in fields}, **parent.params}
    return {k for k, v in params.model_dump().items() if before.get(k) != v}
