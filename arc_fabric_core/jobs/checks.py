"""What a job is checked for when it is submitted, before it is queued.

The server's API and ``jobs submit`` both check a job here; each kind is checked by the
engine's own check for that operation (``plan``, ``check_fork``, ``check_edit``, ...),
so what would refuse the job when it runs refuses it now, with the same message.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from arc_fabric_core.contract.errors import InputError
from arc_fabric_core.store.session import SESSION_ID

if TYPE_CHECKING:
    from arc_fabric_core.engine.facade import Engine

# Higher runs first; bounded so that the queue's SQLite column never overflows.
PRIORITY_MIN, PRIORITY_MAX = -1000, 1000


def check_priority(priority: int) -> int:
    """``priority`` if it is a whole number in PRIORITY_MIN..PRIORITY_MAX."""
    if isinstance(priority, bool) or not isinstance(priority, int) or not PRIORITY_MIN <= priority <= PRIORITY_MAX:
        raise InputError("priority", f"must be a whole number in {PRIORITY_MIN}..{PRIORITY_MAX}, got {priority!r}")
    return priority


def check_session_id(session_id: Any) -> str:
    """``session_id`` if it is one the store makes (never a path: ``../../etc``)."""
    if not isinstance(session_id, str) or re.fullmatch(SESSION_ID, session_id) is None:
        raise InputError("session", f"invalid session id {session_id!r}; expected one like 20261127-044059-1d676c07")
    return session_id


def check_decode_step(doc: Any, step: Any) -> None:
    """A decode's ``step`` is a checkpointed one (none: the final latents, or the clean
    estimate at the newest checkpoint of an unfinished session)."""
    if step is None:
        return
    if isinstance(step, bool) or not isinstance(step, int):
        raise InputError("step", f"must be a whole number, got {step!r}")
    if step not in {c.step for c in doc.checkpoints}:
        steps = ", ".join(str(c.step) for c in doc.checkpoints) or "none"
        raise InputError("step", f"no checkpoint at step {step}; checkpointed steps: {steps}")


def check_keys(kind: str, payload: dict[str, Any]) -> None:
    """The job's kind and the keys of its payload (what :meth:`JobQueue.submit` checks),
    naming a missing key as the user gives it."""
    from arc_fabric_core.jobs.kinds import KINDS

    if kind not in KINDS:
        raise InputError("kind", f"unknown job kind {kind!r}; allowed: {', '.join(KINDS)}")
    required, optional = KINDS[kind]
    missing = sorted(required - set(payload))
    if missing:
        hint = "; add model=<name>" if missing[0] == "model" else ""
        raise InputError(missing[0], f"a {kind} job needs it (needs: {', '.join(sorted(required))}){hint}")
    unknown = sorted(set(payload) - required - optional)
    if unknown:
        raise InputError(unknown[0], f"unknown for a {kind} job; allowed: {', '.join(sorted(required | optional))}")


def validate_job(engine: Engine, kind: str, payload: dict[str, Any]) -> None:
    """Refuse every job the engine would refuse when it runs: nothing is written."""
    check_keys(kind, payload)
    if kind == "generate":
        from arc_fabric_core.engine.hybrid import parse_hybrid

        hybrid = parse_hybrid(payload["schedule"]) if payload.get("schedule") else None
        params = payload.get("params") or {}
        if not isinstance(params, dict):
            raise InputError("params", f"must be a mapping of parameter names to values, got {params!r}")
        engine.plan(str(payload["model"]), params, payload.get("variant"), payload.get("weights"), hybrid)
        return
    session = check_session_id(payload["session"])
    if kind == "extend":
        engine.check_extension(session, payload["blocks"], payload.get("prompt"))
    elif kind == "rewind":
        engine.check_rewind(session, payload["block"], payload.get("prompt"), payload.get("overrides"))
    elif kind == "decode":  # the store is enough: no plugin is needed here, the job runs where the model is
        check_decode_step(engine.store.load_doc(session), payload.get("step"))
    elif kind == "fork":
        engine.check_fork(session, payload["step"], payload.get("overrides"))
    elif kind == "edit":
        from arc_fabric_core.contract.models import validate_params
        from arc_fabric_core.engine.edit_mask import EditMask

        try:
            mask = validate_params(EditMask, payload["mask"]) if payload.get("mask") else None
        except InputError as exc:
            raise InputError(f"mask.{exc.field}", exc.message) from None
        engine.check_edit(session, payload.get("step"), payload.get("strength"), payload.get("overrides"), mask)
    else:  # resume
        engine.check_resume(session, payload.get("until"))
