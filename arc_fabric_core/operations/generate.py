"""generate: a new session from a model and its parameters (a hybrid schedule's stages
when given), started from fresh noise drawn from its seed."""

from __future__ import annotations

from typing import Any

import torch

from arc_fabric_core.contract.operations import OperationSpec
from arc_fabric_core.engine.run import Run
from arc_fabric_core.store.session import Operation


class Generate(OperationSpec):
    name = "generate"
    summary = "a new session: a model, its parameters, optionally a hybrid schedule"
    makes = Operation.CREATE

    def plan(
        self,
        engine: Any,
        model: Any,
        params: dict[str, Any],
        variant: str | None = "auto",
        weights: str | None = None,
        hybrid: Any = None,
    ) -> Any:
        return engine.plan(model, params, variant, weights, hybrid)

    def start(self, run: Run) -> None:
        """Stage 0's model draws the first latents from the seed and makes the schedule."""
        session = run.session
        bound = run.models.stage(0)
        run.plan_schedule(bound)
        session.generator = torch.Generator("cpu").manual_seed(session.params.seed)
        session.latents = bound.initial_latents(session)
        run.checkpoint()
