"""rewind: an autoregressive session rewound to a block — a fork at the block's first
step that makes the blocks from there on again (under a new prompt from that block on,
when given): the autoregressive form of an edit, without regenerating the past."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from arc_fabric_core.contract.command_line import Argument
from arc_fabric_core.contract.errors import InputError, SessionError
from arc_fabric_core.contract.operations import EngineChecked, Request
from arc_fabric_core.engine.planning import resolve_info
from arc_fabric_core.operations.branching import with_overrides


class RewindRequest(Request):
    block: int = Field(ge=0, le=100_000, description="The first block made again")
    prompt: str | None = Field(None, description="The prompt from that block on (default: as before)")
    overrides: dict[str, Any] | None = Field(None, description="Other parameters to change, e.g. seed")
    inputs: dict[str, Any] = Field(
        default_factory=dict,
        description="Per-chunk inputs (e.g. actions) of the blocks made again: the rows of those blocks",
    )


class Rewind(EngineChecked):
    name = "rewind"
    summary = "remake an autoregressive video from a block on (new prompt optional)"
    Request = RewindRequest
    makes = None  # a rewind is a fork at the block's first step
    cli_help = "remake an autoregressive video from a block on (a new session)"
    cli_flags = {
        "block": Argument(help="the first block made again"),
        "prompt": Argument(help="the prompt from that block on (default: as before)"),
        "overrides": Argument(pairs=True, help="e.g. seed=3"),
    }

    def check(self, engine: Any, request: Any, session: str | None = None) -> Any:
        assert session is not None
        step, changes = self.plan(engine, session, request.block, request.prompt, request.overrides)
        return engine.operation("fork").plan(engine, session, step, changes, inputs=request.inputs)

    def create(self, engine: Any, plan: Any) -> Any:
        return engine.operation("fork").branch(engine, plan)

    def cli_done(self, session: Any, source_id: str | None, done: Any = None) -> str:
        passes = session.doc.passes or [session.doc.total_steps]
        block = [sum(passes[:i]) for i in range(len(passes))].index(session.step_index)
        return f"rewind: {session.id} from {source_id} at block {block} (step {session.step_index})"

    def plan(
        self,
        engine: Any,
        session_id: str,
        block: int,
        prompt: str | None = None,
        overrides: dict[str, Any] | None = None,
    ) -> tuple[int, dict[str, Any]]:
        """What a rewind checks, before any write: the fork step and its overrides."""
        doc = engine.store.load_doc(session_id)
        ref = resolve_info(engine.plugins, doc.model)
        hook = engine.plugins.optional_stage("arc_rewind_params", ref.spec.name)
        if hook is None:
            raise SessionError(f"{ref.spec.name} is not an autoregressive model; only those rewind")
        passes = doc.passes or [doc.total_steps]
        if not isinstance(block, int) or not 0 <= block < len(passes):
            raise InputError("block", f"session {doc.id} has blocks 0..{len(passes) - 1}, got {block!r}")
        changes = {**hook(model=ref, params=ref.params(doc.params), block=block, prompt=prompt), **(overrides or {})}
        step = sum(passes[:block])
        with_overrides(engine, doc, changes)
        if not any(c.step == step for c in doc.checkpoints):
            raise InputError("block", f"session {doc.id} has no checkpoint at block {block}'s first step ({step})")
        engine.operation("fork").plan(engine, session_id, step, changes)  # and the rest of what the fork checks
        return step, changes
