"""decode: a session's video (its final latents, or the clean estimate at a checkpoint),
made by the model of the stage that made those latents, where that model is."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from arc_fabric_core.contract.errors import InputError
from arc_fabric_core.contract.operations import EngineChecked, Request


class DecodeRequest(Request):
    step: int | None = Field(None, ge=0, description="A checkpointed step to preview (default: the final latents)")


class Decode(EngineChecked):
    name = "decode"
    summary = "write the video of a session (or a preview at one of its checkpoints)"
    runs = False
    Request = DecodeRequest

    def check(self, engine: Any, request: Any, session: str | None = None) -> Any:
        assert session is not None
        return self.plan(engine, session, request.step)

    def create(self, engine: Any, plan: Any) -> Any:
        return engine.open(plan.id)

    def plan(self, engine: Any, session_id: str, step: int | None = None) -> Any:
        """The session, and ``step`` one of its checkpoints when given."""
        doc = engine.store.load_doc(session_id)  # the store is enough: no plugin is needed to check
        if step is None:
            return doc
        if isinstance(step, bool) or not isinstance(step, int):
            raise InputError("step", f"must be a whole number, got {step!r}")
        if step not in {c.step for c in doc.checkpoints}:
            steps = ", ".join(str(c.step) for c in doc.checkpoints) or "none"
            raise InputError("step", f"no checkpoint at step {step}; checkpointed steps: {steps}")
        return doc
