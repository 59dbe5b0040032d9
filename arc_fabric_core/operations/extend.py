"""extend: a finished autoregressive session made some blocks longer (with a new
prompt from the first new block on, when given).

The extension is a new session holding the parent's video that runs only the new
blocks: its first run starts at the parent's last step with the parent's final latents
and the new frames' first noise. The model's own state (its KV cache) continues the
parent's when the parent ran here on the same warm model (a live session); otherwise the
model rebuilds it from the parent's latents. Either way the result is what generating
the longer video at once gives."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from pydantic import Field

from arc_fabric_core.contract.command_line import Argument
from arc_fabric_core.contract.errors import ArcFabricError, InputError, SessionError
from arc_fabric_core.contract.inputs import check_chunk_inputs, load_input
from arc_fabric_core.contract.models import ModelRef
from arc_fabric_core.contract.operations import EngineChecked, Request
from arc_fabric_core.contract.params import GenerationParams
from arc_fabric_core.engine.planning import passes_of, resolve_info
from arc_fabric_core.engine.run import Run
from arc_fabric_core.engine.state import Session
from arc_fabric_core.operations.branching import NON_CONDITIONING, changed_fields, share_conditioning
from arc_fabric_core.store.session import LATENTS_KEY, Operation, SessionDoc

EXTENDS_FILE = "extends.safetensors"


@dataclass(frozen=True)
class ExtendPlan:
    parent: SessionDoc
    ref: ModelRef
    params: GenerationParams
    passes: list[int]
    overrides: dict[str, Any]
    # Per-chunk inputs of the whole extended video (the parent's rows, then the new ones).
    inputs: dict[str, torch.Tensor] = field(default_factory=dict)


class ExtendRequest(Request):
    blocks: int = Field(1, ge=1, le=1000, description="Blocks to add")
    prompt: str | None = Field(None, description="The prompt of the new blocks (default: the last one)")
    inputs: dict[str, Any] = Field(
        default_factory=dict,
        description="The new blocks' per-chunk inputs by name (e.g. their actions): a list of numbers or a file path",
    )


class Extend(EngineChecked):
    name = "extend"
    summary = "make a finished autoregressive video some blocks longer (new prompt optional)"
    makes = Operation.EXTEND
    Request = ExtendRequest
    cli_help = "an autoregressive video made longer (a new session)"
    cli_flags = {
        "blocks": Argument(required=True, help="blocks to add"),
        "prompt": Argument(help="the prompt of the new blocks (default: the last one)"),
    }

    def check(self, engine: Any, request: Any, session: str | None = None) -> ExtendPlan:
        assert session is not None
        inputs = getattr(request, "inputs", None) or {}
        if not isinstance(inputs, dict):
            raise InputError("inputs", f"must be a mapping of input names to values, got {inputs!r:.60}")
        return self.plan(engine, session, request.blocks, request.prompt, inputs)

    def create(self, engine: Any, plan: ExtendPlan) -> Session:
        return self.branch(engine, plan)

    def cli_created(self) -> str:
        return "extension"

    def cli_done(self, session: Session, source_id: str | None, done: Any = None) -> str:
        starts = [sum(session.doc.passes[:i]) for i in range(len(session.doc.passes))]
        blocks = sum(1 for start in starts if start >= session.step_index)  # those after the parent's
        added = session.doc.total_steps - session.step_index
        return f"extend: {session.id} from {source_id}, {blocks} more blocks ({added} steps)"

    def plan(
        self,
        engine: Any,
        parent_id: str,
        blocks: int,
        prompt: str | None = None,
        inputs: dict[str, Any] | None = None,
    ) -> ExtendPlan:
        """Everything an extension checks, before any compute or write: the parent, its
        model, the new parameters and passes, the overrides that made them, and the new
        blocks' per-chunk inputs appended to the parent's."""
        if not isinstance(blocks, int) or blocks < 1:
            raise InputError("blocks", f"must be a whole number of blocks, at least 1; got {blocks!r}")
        parent = engine.store.load_doc(parent_id)
        ref = resolve_info(engine.plugins, parent.model)
        hook = engine.plugins.optional_stage("arc_extend_params", ref.spec.name)
        if hook is None:
            raise SessionError(f"{ref.spec.name} is not an autoregressive model; only those extend")
        if parent.final is None:
            raise SessionError(
                f"session {parent.id} is {parent.status.value}: only a finished session extends (resume it first)"
            )
        if parent.stages:
            raise SessionError(f"session {parent.id} runs a hybrid schedule; those do not extend")
        given = {name: load_input(value, f"inputs.{name}") for name, value in (inputs or {}).items()}
        overrides = hook(model=ref, params=ref.params(parent.params), blocks=blocks, prompt=prompt, inputs=given)
        params = ref.params({**parent.params, **overrides})
        passes = passes_of(engine.plugins, ref, params)
        old = parent.passes or [parent.total_steps]
        if passes[: len(old)] != old:
            raise ArcFabricError(
                f"{ref.spec.name}: arc_extend_params made passes {passes} that do not begin with the parent's {old}"
            )
        new = check_chunk_inputs(ref.spec.inputs, given, params, len(passes) - len(old), ref.spec.name)
        had = engine.store.read_inputs(parent) if new else {}
        for name in new.keys() - had.keys():  # its rows would start at the first new chunk
            raise InputError(f"inputs.{name}", f"session {parent.id} was made without it: an extension cannot add it")
        whole = {name: torch.cat([had[name], rows]) if name in had else rows for name, rows in new.items()}
        return ExtendPlan(parent, ref, params, passes, overrides, whole)

    def branch(self, engine: Any, plan: ExtendPlan) -> Session:
        """The extension's session, written; nothing is computed here."""
        parent, ref, params, passes = plan.parent, plan.ref, plan.params, plan.passes
        doc = SessionDoc(
            model=parent.model,
            params=params.stored(),
            device=str(engine.device),
            dtype=engine.dtype,
            total_steps=sum(passes),
            passes=passes if len(passes) > 1 else [],
            step_index=parent.total_steps,
            operation=Operation.EXTEND,
            parent=parent.id,
            parent_step=parent.total_steps,
            overrides=plan.overrides,
        )
        store = engine.store
        assert parent.final is not None
        # Under a name of its own: the extension's final latents, when it finishes, must not
        # replace the record of what it started from.
        doc.extends = store.share_file(parent.id, parent.final, doc.id, name=EXTENDS_FILE)
        for name, record in parent.inputs.items():
            if name in plan.inputs:  # a per-chunk one, grown by the new blocks
                doc.inputs[name] = store.write_input(doc.id, name, plan.inputs[name])
            else:
                doc.inputs[name] = store.share_file(parent.id, record, doc.id)
        if not changed_fields(parent, params) - NON_CONDITIONING - set(ref.spec.params.fixed_fields):
            share_conditioning(store, parent, doc)
        store.save_doc(doc)
        return Session(doc=doc, ref=ref, params=params, step_index=parent.total_steps)

    def start(self, run: Run) -> None:
        """The parent's video, then the new frames' first noise; the parent's live model
        state when there is one."""
        session = run.session
        doc = session.doc
        assert doc.extends is not None and doc.parent is not None
        bound = run.models.stage(0)
        run.plan_schedule(bound, first_pass=session.pass_of(doc.step_index))
        session.generator = torch.Generator("cpu").manual_seed(session.params.seed)
        fresh = bound.initial_latents(session)
        made, _ = run.binder.store.read_tensors(doc.id, doc.extends)
        old = made[LATENTS_KEY].to(fresh.device, torch.float32)
        session.latents = torch.cat([old, fresh[:, :, old.shape[2] :]], dim=2)
        session.step_index = doc.step_index
        kept = run.live.take(doc.parent, doc.step_index, bound) if run.live is not None else None
        if kept is not None:
            session.model_state.update(kept)
            run.continued = True
        run.checkpoint()
