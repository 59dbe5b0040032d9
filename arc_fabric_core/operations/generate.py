"""generate: a new session from a model and its parameters (a hybrid schedule's stages
when given), started from fresh noise drawn from its seed."""

from __future__ import annotations

from typing import Any

import torch
from pydantic import Field

from arc_fabric_core.contract.errors import InputError
from arc_fabric_core.contract.operations import EngineChecked, Request
from arc_fabric_core.engine.planning import write_new
from arc_fabric_core.engine.run import Run
from arc_fabric_core.store.session import Operation


class GenerateRequest(Request):
    model: str = Field(description="An installed model, e.g. wan21")
    variant: str | None = Field(
        None, description="A variant of the model; default: real weights if configured, else tiny"
    )
    weights: str | None = Field(None, description="A local checkpoint folder for a real variant")
    params: dict[str, Any] = Field(default_factory=dict, description="Generation parameters (see the model's schema)")
    schedule: str | dict[str, Any] | None = Field(None, description="A hybrid schedule: a shipped name or a config")
    inputs: dict[str, Any] = Field(
        default_factory=dict,
        description="Inputs beside text by name (the model's `inputs`): a list of numbers, or a local file path "
        "(.safetensors, .npy, .json, an image)",
    )


class Generate(EngineChecked):
    name = "generate"
    summary = "a new session: a model, its parameters, optionally a hybrid schedule"
    makes = Operation.CREATE
    Request = GenerateRequest
    on_session = False
    job_params = "params"

    def job_payload(self, values: dict[str, Any]) -> dict[str, Any]:
        """Its fields, every other key a parameter; ``schedule=NAME`` a shipped schedule
        config, its hand-off moved by ``boundary=B``."""
        moved = "boundary" in values
        boundary = values.pop("boundary", None)
        payload = super().job_payload(values)
        payload.setdefault("params", {})
        if "schedule" in payload:
            from arc_fabric_core.engine.hybrid import named_schedule

            payload["schedule"] = named_schedule(str(payload["schedule"]))
            if moved:
                try:
                    payload["schedule"] = {**payload["schedule"], "boundary": float(boundary), "boundaries": []}
                except (TypeError, ValueError):
                    raise InputError("boundary", "must be a number") from None
        elif moved:
            raise InputError("boundary", "moves a schedule's hand-off: give schedule=<name> too")
        return payload

    def check(self, engine: Any, request: Any, session: str | None = None) -> Any:
        from arc_fabric_core.engine.hybrid import named_schedule, parse_hybrid

        schedule = named_schedule(request.schedule) if isinstance(request.schedule, str) else request.schedule
        hybrid = parse_hybrid(schedule) if schedule else None
        params = request.params or {}
        if not isinstance(params, dict):
            raise InputError("params", f"must be a mapping of parameter names to values, got {params!r}")
        inputs = getattr(request, "inputs", None) or {}
        if not isinstance(inputs, dict):
            raise InputError("inputs", f"must be a mapping of input names to values, got {inputs!r:.60}")
        return self.plan(engine, str(request.model), params, request.variant, request.weights, hybrid, inputs)

    def create(self, engine: Any, plan: Any) -> Any:
        write_new(engine.store, plan)
        return plan

    def plan(
        self,
        engine: Any,
        model: Any,
        params: dict[str, Any],
        variant: str | None = "auto",
        weights: str | None = None,
        hybrid: Any = None,
        inputs: dict[str, Any] | None = None,
    ) -> Any:
        return engine.plan(model, params, variant, weights, hybrid, inputs)

    def start(self, run: Run) -> None:
        """Stage 0's model draws the first latents from the seed and makes the schedule."""
        session = run.session
        bound = run.models.stage(0)
        run.plan_schedule(bound)
        session.generator = torch.Generator("cpu").manual_seed(session.params.seed)
        session.latents = bound.initial_latents(session)
        run.checkpoint()
