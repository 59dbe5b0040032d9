"""resume: a stored session continued from its newest good checkpoint, to its end or
to step ``until`` (also in another process than the one that ran it)."""

from __future__ import annotations

from typing import Any

from arc_fabric_core.contract.operations import OperationSpec


class Resume(OperationSpec):
    name = "resume"
    summary = "continue a paused, failed or interrupted session from its newest good checkpoint"

    def plan(self, engine: Any, session_id: str, until: int | None = None) -> Any:
        return engine.check_resume(session_id, until)
