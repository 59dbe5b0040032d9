"""resume: a stored session continued from its newest good checkpoint, to its end or
to step ``until`` (also in another process than the one that ran it)."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from arc_fabric_core.contract.command_line import Argument
from arc_fabric_core.contract.operations import EngineChecked, Request


class ResumeRequest(Request):
    until: int | None = Field(None, ge=0, description="Stop at this step (default: the end)")


class Resume(EngineChecked):
    name = "resume"
    summary = "continue a paused, failed or interrupted session from its newest good checkpoint"
    Request = ResumeRequest
    in_place = True
    cli_help = "continue a session from its last good checkpoint"
    cli_flags = {
        "id": Argument(help="session id, or a unique prefix or suffix of one"),
        "until": Argument(help="stop after this step (default: the end)"),
    }

    def check(self, engine: Any, request: Any, session: str | None = None) -> Any:
        assert session is not None
        return self.plan(engine, session, request.until)

    def create(self, engine: Any, plan: Any) -> Any:
        return engine.open(plan.id)

    def plan(self, engine: Any, session_id: str, until: int | None = None) -> Any:
        """The session, refused when it is finished (a fork or an edit goes on from it)."""
        return engine.check_resume(session_id, until)

    def cli_created(self) -> None:
        return None  # it runs the session it opens: nothing to create and run later

    def cli_done(self, session: Any, source_id: str | None, done: Any = None) -> None:
        return None  # its run says where it got
