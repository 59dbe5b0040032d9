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


def check_keys(kind: str, payload: dict[str, Any], plugins: Any = None) -> None:
    """The job's kind and the keys of its payload (what :meth:`JobQueue.submit` checks),
    naming a missing key as the user gives it."""
    from arc_fabric_core.jobs.kinds import kinds

    known = kinds(plugins)
    if kind not in known:
        raise InputError("kind", f"unknown job kind {kind!r}; allowed: {', '.join(known)}")
    required, optional = known[kind]
    missing = sorted(required - set(payload))
    if missing:
        hint = "; add model=<name>" if missing[0] == "model" else ""
        raise InputError(missing[0], f"a {kind} job needs it (needs: {', '.join(sorted(required))}){hint}")
    unknown = sorted(set(payload) - required - optional)
    if unknown:
        raise InputError(unknown[0], f"unknown for a {kind} job; allowed: {', '.join(sorted(required | optional))}")


def validate_job(engine: Engine, kind: str, payload: dict[str, Any]) -> Any:
    """Refuse every job the engine would refuse when it runs: nothing is written. The
    check is the operation's own (:meth:`OperationSpec.check`), so what would refuse the
    job when it runs refuses it now, with the same message; returns its plan."""
    check_keys(kind, payload, engine.plugins)
    op = engine.plugins.operation(kind)
    session = check_session_id(payload["session"]) if op.on_session else None
    plan = op.check(engine, op.job_request(payload), session)
    if session is not None:
        # A model may offer less than its hooks allow (its declared capabilities): the
        # engine alone would run it, so what the model leaves out is refused here.
        model = engine.store.load_doc(session).model.name
        engine.plugins.capabilities(model).check_job(model, kind, payload, engine.plugins.operations_for(model))
    return plan
