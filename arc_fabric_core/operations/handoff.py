"""hand-off: a fork that gives the steps from its fork point on to other stage models
(another second-stage model of a hybrid schedule, or a schedule where there was none).
The steps before the fork point are the parent's history: the new stages must run them
with the same models and guidance."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from arc_fabric_core.contract.errors import InputError
from arc_fabric_core.contract.operations import EngineChecked, Request
from arc_fabric_core.engine.hybrid import HybridSpec, check_latent_spaces, end_steps, resolve_stage
from arc_fabric_core.engine.planning import check_stage_inputs, check_stages, model_info, resolve_info
from arc_fabric_core.store.session import SessionDoc, StageInfo


def restage(engine: Any, parent: SessionDoc, step: int, hybrid: HybridSpec) -> list[StageInfo]:
    """The stages of a fork that changes the hybrid schedule from ``step`` on."""
    resolved = [
        resolve_stage(engine.plugins, st, parent.model.name, parent.model.variant, hybrid.tiny) for st in hybrid.stages
    ]
    refs = [r for r, _ in resolved]
    check_latent_spaces([resolve_info(engine.plugins, parent.model), *refs])
    for ref in refs:
        check_stages(engine.plugins, ref)
    check_stage_inputs([resolve_info(engine.plugins, parent.model), *refs])
    ends = end_steps(
        hybrid.unit, hybrid.boundaries, parent.total_steps, parent.timesteps or None, parent.sigmas or None
    )
    if ends is None:
        raise InputError("schedule", f"session {parent.id} has not started: its timesteps are not known yet")
    new = [
        StageInfo(
            model=model_info(ref),
            guidance=hybrid.stages[i].guidance,
            boundary=hybrid.boundaries[i] if i < len(hybrid.boundaries) else None,
            end_step=ends[i],
        )
        for i, ref in enumerate(refs)
    ]
    old = parent.stages or [StageInfo(model=parent.model, end_step=parent.total_steps)]

    def runner(stages: list[StageInfo], i: int) -> tuple[Any, ...]:
        st = next(st for st in stages if i < (st.end_step or 0))
        return (st.model.name, st.model.variant, st.model.weights, st.guidance)

    for i in range(step):
        if runner(new, i) != runner(old, i):
            raise InputError(
                "schedule",
                f"step {i} ran {'/'.join(map(str, runner(old, i)[:2]))} in session {parent.id}; a fork at step "
                f"{step} may change only the stages from there on (the steps before it are its history)",
            )
    return new


class HandOffRequest(Request):
    step: int = Field(ge=0, description="The step to branch at; the new stages run from there")
    schedule: str | dict[str, Any] = Field(
        description="The hybrid schedule from the step on: a shipped name or a config"
    )
    overrides: dict[str, Any] = Field(default_factory=dict, description="Parameters the branch changes (prompt, ...)")


class HandOff(EngineChecked):
    name = "hand-off"
    summary = "fork at a step and give the remaining steps to other stage models"
    needs = "fork"
    Request = HandOffRequest
    cli_subcommand = False  # `sessions fork --stage N=MODEL/VARIANT` or `--hand-off MODEL/VARIANT`

    def check(self, engine: Any, request: Any, session: str | None = None) -> Any:
        from arc_fabric_core.engine.hybrid import named_schedule, parse_hybrid

        assert session is not None
        schedule = named_schedule(request.schedule) if isinstance(request.schedule, str) else request.schedule
        return self.plan(engine, session, request.step, parse_hybrid(schedule), request.overrides)

    def create(self, engine: Any, plan: Any) -> Any:
        return self.branch(engine, plan)

    def plan(
        self, engine: Any, parent_id: str, step: int, hybrid: HybridSpec, overrides: dict[str, Any] | None = None
    ) -> Any:
        return engine.operation("fork").plan(engine, parent_id, step, overrides, hybrid)

    def branch(self, engine: Any, plan: Any) -> Any:
        return engine.operation("fork").branch(engine, plan)
