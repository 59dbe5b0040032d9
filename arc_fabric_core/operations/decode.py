"""decode: a session's video (its final latents, or the clean estimate at a checkpoint),
made by the model of the stage that made those latents, where that model is."""

from __future__ import annotations

from typing import Any

from arc_fabric_core.contract.errors import SessionError
from arc_fabric_core.contract.operations import OperationSpec


class Decode(OperationSpec):
    name = "decode"
    summary = "write the video of a session (or a preview at one of its checkpoints)"
    runs = False

    def plan(self, engine: Any, session_id: str, step: int | None = None) -> Any:
        """A session with something to decode: finished, or a checkpoint (at ``step``)."""
        doc = engine.store.load_doc(session_id)
        if doc.final is None and not doc.checkpoints:
            raise SessionError(f"session {session_id} has not run a step yet: there is nothing to decode")
        return doc
