"""fork: a new session that continues a parent from its checkpoint at a step, with
other parameters if given (never those fixing the schedule or the latent shape).

The child shares the parent's checkpoint at that step (a hard link, no copy) and runs
only the remaining steps; its first run restores that checkpoint. A new seed reseeds the
noise drawn from then on. With a hybrid schedule it is a hand-off (``handoff.py``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from pydantic import Field

from arc_fabric_core.contract.command_line import Argument
from arc_fabric_core.contract.errors import InputError
from arc_fabric_core.contract.inputs import check_chunk_inputs, load_input
from arc_fabric_core.contract.models import ModelRef
from arc_fabric_core.contract.operations import EngineChecked, Request
from arc_fabric_core.contract.params import GenerationParams
from arc_fabric_core.engine.hybrid import HybridSpec
from arc_fabric_core.engine.planning import session_of
from arc_fabric_core.engine.state import Session
from arc_fabric_core.operations.branching import (
    NON_CONDITIONING,
    changed_fields,
    child_doc,
    share_conditioning,
    with_overrides,
)
from arc_fabric_core.operations.handoff import restage
from arc_fabric_core.store.files import DOC_COPY_KEY
from arc_fabric_core.store.session import CheckpointRecord, Operation, SessionDoc, StageInfo


@dataclass(frozen=True)
class ForkPlan:
    """What a fork was checked to be: nothing written yet."""

    parent: SessionDoc
    ref: ModelRef
    params: GenerationParams
    overrides: dict[str, Any]  # as validated
    at: CheckpointRecord  # the parent's checkpoint the fork starts from
    stages: list[StageInfo] | None = None  # a fork that changes the hybrid schedule
    hybrid: HybridSpec | None = None
    # Per-chunk inputs it replaces (whole: the parent's rows before the fork's chunk, then the new ones).
    inputs: dict[str, torch.Tensor] = field(default_factory=dict)


class ForkRequest(Request):
    step: int = Field(ge=0, description="The step to branch at")
    overrides: dict[str, Any] = Field(default_factory=dict, description="Parameters the branch changes (prompt, ...)")
    inputs: dict[str, Any] = Field(
        default_factory=dict,
        description="Per-chunk inputs (e.g. actions) replaced from the fork's chunk on: the rows of those chunks",
    )


class Fork(EngineChecked):
    name = "fork"
    summary = "a new session continuing this one from a checkpoint, with other parameters"
    makes = Operation.FORK
    Request = ForkRequest
    cli_help = "branch a session at a checkpointed step, with overrides"
    cli_flags = {
        "step": Argument(),
        "overrides": Argument(pairs=True, help="e.g. prompt='a cat' guidance=6 seed=3"),
    }
    job_params = "overrides"

    def check(self, engine: Any, request: Any, session: str | None = None) -> ForkPlan:
        assert session is not None
        return self.plan(engine, session, request.step, request.overrides, inputs=request.inputs)

    def create(self, engine: Any, plan: ForkPlan) -> Session:
        return self.branch(engine, plan)

    def cli_arguments(self, parser: Any) -> None:
        """Its fields, and the stages the fork hands its steps to (a hand-off)."""
        super().cli_arguments(parser)
        parser.add_argument(
            "--stage",
            action="append",
            default=[],
            metavar="N=MODEL/VARIANT",
            help="hybrid: run stage N (from the fork step on) with another model, e.g. --stage 1=wan21/14b",
        )
        parser.add_argument(
            "--hand-off",
            default=None,
            metavar="MODEL/VARIANT",
            help="run the steps from the fork step on with another model (same latent space)",
        )

    def cli_plan(self, engine: Any, args: Any, session: str | None) -> ForkPlan:
        assert session is not None
        request = self.job_request(self.cli_request(args))
        hybrid = hybrid_from_flags(engine.store.load_doc(session), request.step, args.stage, args.hand_off)
        return self.plan(engine, session, request.step, request.overrides, hybrid, request.inputs)

    def cli_done(self, session: Session, source_id: str | None, done: Any = None) -> str:
        step = session.step_index
        return f"fork: {session.id} from {source_id}@{step}, runs {session.doc.total_steps - step} steps"

    def plan(
        self,
        engine: Any,
        parent_id: str,
        step: int,
        overrides: dict[str, Any] | None = None,
        hybrid: HybridSpec | None = None,
        inputs: dict[str, Any] | None = None,
    ) -> ForkPlan:
        """Everything a fork checks, before any write: the parent, the step (one with a
        checkpoint, after the parent's own fork point), the overrides (no fixed field
        changed) and, with ``hybrid``, the new stages."""
        parent = engine.store.load_doc(parent_id)
        ref, params, overrides = with_overrides(engine, parent, overrides)
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
        stages = restage(engine, parent, step, hybrid) if hybrid is not None else None
        replaced = replaced_inputs(engine, parent, ref, params, step, inputs or {})
        return ForkPlan(parent, ref, params, overrides, at, stages, hybrid, replaced)

    def branch(self, engine: Any, plan: ForkPlan) -> Session:
        """The child, written: nothing is computed here."""
        store = engine.store
        parent, params, overrides, at, step = plan.parent, plan.params, plan.overrides, plan.at, plan.at.step
        doc = child_doc(engine, parent, params, Operation.FORK, step, overrides)
        store.share_inputs(parent, doc)
        for name, tensor in plan.inputs.items():
            doc.inputs[name] = store.write_input(doc.id, name, tensor)
        if plan.hybrid is not None:
            assert plan.stages is not None
            doc.stages = plan.stages
            doc.schedule_name, doc.boundary_unit = plan.hybrid.name, plan.hybrid.unit
            doc.overrides = {**overrides, "stages": " > ".join(f"{s.model.name}/{s.model.variant}" for s in doc.stages)}
        # Only the fork point is shared: the parent's earlier checkpoints were reached with the
        # parent's parameters, so a fork of this fork before step k could not reproduce it.
        reseed = "seed" in overrides and overrides["seed"] != parent.params.get("seed")
        if not reseed:
            doc.checkpoints.append(store.share_file(parent.id, at, doc.id))
        else:
            # The fork point itself with the new seed: fresh noise from here on differs.
            tensors, metadata = store.read_tensors(parent.id, at)
            tensors["rng.generator"] = torch.Generator("cpu").manual_seed(params.seed).get_state()
            metadata[DOC_COPY_KEY] = doc.model_dump_json(exclude={"checkpoints"})
            record = store.write_tensors(doc.id, at.file, tensors, metadata)
            doc.checkpoints.append(CheckpointRecord(step=step, **record.model_dump()))
        if parent.edit is not None and parent.edit.tensors is not None:
            # A fork of a masked edit goes on blending the same source back outside the mask.
            doc.edit = parent.edit.model_copy(
                update={"tensors": store.share_file(parent.id, parent.edit.tensors, doc.id)}
            )
        if not changed_fields(parent, params) - NON_CONDITIONING:
            share_conditioning(store, parent, doc)
        store.save_doc(doc)
        return session_of(engine.plugins, doc, step_index=step)


def _model_variant(text: str, field: str) -> tuple[str, str | None]:
    model, _, variant = text.partition("/")
    if not model:
        raise InputError(field, f"expected MODEL or MODEL/VARIANT, got {text!r}")
    return model, variant or None


def hybrid_from_flags(doc: SessionDoc, step: int, stages: list[str], hand_off: str | None) -> HybridSpec | None:
    """The hybrid schedule of a fork from ``--stage N=MODEL/VARIANT`` and ``--hand-off``
    (None when neither is given): the parent's stages, at the steps they ran."""
    if not stages and hand_off is None:
        return None
    if stages and hand_off is not None:
        raise InputError("stage", "give --stage or --hand-off, not both")
    current = doc.stages or []
    specs = [
        {"model": st.model.name, "variant": st.model.variant, "weights": st.model.weights, "guidance": st.guidance}
        for st in current
    ] or [{"model": doc.model.name, "variant": doc.model.variant, "weights": doc.model.weights}]
    ends = [st.end_step for st in current[:-1]]
    if any(e is None for e in ends):
        raise InputError("stage", f"session {doc.id} has not started: where its stages hand over is not known yet")
    if hand_off is not None:
        model, variant = _model_variant(hand_off, "hand-off")
        keep = [i for i, e in enumerate([*ends, doc.total_steps]) if step > (ends[i - 1] if i else 0)]
        specs = [specs[i] for i in keep] + [{"model": model, "variant": variant}]
        ends = [*[ends[i] for i in keep[:-1]], step]
    for item in stages:
        index, sep, target = item.partition("=")
        if not sep or not index.strip().isdigit():
            raise InputError("stage", f"expected N=MODEL/VARIANT, got {item!r}")
        n = int(index)
        if not 0 <= n < len(specs):
            raise InputError("stage", f"session {doc.id} has stages 0..{len(specs) - 1}, got {n}")
        model, variant = _model_variant(target, "stage")
        specs[n] = {"model": model, "variant": variant, "guidance": specs[n].get("guidance")}
    return HybridSpec(stages=specs, boundaries=ends, unit="step", tiny="false", name=doc.schedule_name)


def replaced_inputs(
    engine: Any, parent: SessionDoc, ref: ModelRef, params: GenerationParams, step: int, inputs: dict[str, Any]
) -> dict[str, torch.Tensor]:
    """The per-chunk inputs a fork at ``step`` replaces (a world model's other actions):
    the new rows are those of the chunks from the fork's on; the parent's rows before it
    stay (those chunks were made with them). Checked before anything is written."""
    if not isinstance(inputs, dict):
        raise InputError("inputs", f"must be a mapping of input names to values, got {inputs!r:.60}")
    if not inputs:
        return {}
    passes = parent.passes or [parent.total_steps]
    starts = [sum(passes[:i]) for i in range(len(passes))]
    first = max(i for i, start in enumerate(starts) if start <= step)
    given = {name: load_input(value, f"inputs.{name}") for name, value in inputs.items()}
    known = {spec.name: spec for spec in ref.spec.inputs}
    for name in given:
        if name in known and known[name].per_chunk is None:
            raise InputError(
                f"inputs.{name}", f"{ref.spec.name} takes {name!r} once for the whole video: a fork keeps its parent's"
            )
    new = check_chunk_inputs(ref.spec.inputs, given, params, len(passes) - first, ref.spec.name)
    had = engine.store.read_inputs(parent)
    out = {}
    for name, rows in new.items():
        if name not in had:
            raise InputError(f"inputs.{name}", f"session {parent.id} was made without it: a fork cannot add it")
        kept = had[name][: first * known[name].per_chunk]
        out[name] = torch.cat([kept, rows.to(kept.dtype)])
    return out
