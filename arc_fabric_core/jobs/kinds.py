"""The kinds of job the queue takes and the payload keys each one has: one per registered
operation (:mod:`arc_fabric_core.operations`, and those plugins add), its keys the fields
of the operation's request, plus ``session`` for an operation on a stored session."""

from __future__ import annotations

from typing import Any

from arc_fabric_core.dispatch.plugins import Plugins, get_plugins


def kinds(plugins: Plugins | None = None) -> dict[str, tuple[set[str], set[str]]]:
    """kind: (required keys, optional keys), in the registry's order."""
    out: dict[str, tuple[set[str], set[str]]] = {}
    for name, op in (plugins or get_plugins()).operations().items():
        fields: dict[str, Any] = op.Request.model_fields
        required = {k for k, f in fields.items() if f.is_required()} | ({"session"} if op.on_session else set())
        out[name] = (required, set(fields) - required)
    return out
