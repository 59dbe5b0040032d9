"""A test plugin that adds an operation of its own: ``retry`` — the same model and
parameters as a stored session, from fresh noise of another seed (a new session whose
lineage names the one it retries). It owns no model and edits nothing in the core."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import Field

from arc_fabric_core.contract.errors import InputError
from arc_fabric_core.contract.hookspecs import hookimpl
from arc_fabric_core.contract.operations import OperationSpec, Request


class RetryRequest(Request):
    seed: int = Field(ge=0, le=2**63 - 1, description="The seed of the new noise")


class Retry(OperationSpec):
    name = "retry"
    summary = "the same model and parameters from fresh noise of another seed"
    Request = RetryRequest
    makes = "retry"

    def applies_to(self, capabilities: Any) -> bool:
        return True  # every model generates

    def check(self, engine: Any, request: Any, session: str | None = None) -> Any:
        doc = engine.store.load_doc(session)
        if request.seed == doc.params.get("seed"):
            raise InputError("seed", f"session {doc.id} has seed {request.seed} already; give another")
        plan = engine.plan(doc.model.name, {**doc.params, "seed": request.seed}, doc.model.variant, doc.model.weights)
        plan.doc.operation, plan.doc.parent, plan.doc.parent_step = self.makes, doc.id, 0
        plan.doc.overrides = {"seed": request.seed}
        return plan

    def create(self, engine: Any, plan: Any) -> Any:
        engine.store.save_doc(plan.doc)
        return plan

    def start(self, run: Any) -> None:
        run.binder.plugins.operation("generate").start(run)  # fresh noise from the session's seed


class RetryPlugin:
    @hookimpl
    def arc_register_operations(self, register: Callable[[Any], None]) -> None:
        register(Retry())
