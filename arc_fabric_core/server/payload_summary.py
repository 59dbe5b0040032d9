"""A job's payload in brief, for the views that carry every job (``GET /api/jobs``, the
WebSocket ``snapshot`` and ``job`` events): what names the job and what a list shows.

Kept: every number, flag and text at the top (model, variant, session, step, strength,
until, blocks, block, prompt...) and one level down (the scalars of ``params``,
``overrides`` or a ``schedule``: the prompt, steps, seed, sizes...), each text cut to its first
:data:`TEXT_CHARS` characters and an ellipsis. Left out: lists and deeper mappings (a
schedule's stages, LongLive's prompt list, custom timesteps, an edit mask).
``GET /api/jobs/{id}`` gives the payload whole.
"""

from __future__ import annotations

from typing import Any

# A list row shows a line or two of the prompt; the web UI cuts it shorter still.
TEXT_CHARS = 200
ELLIPSIS = "…"


def summarize_payload(payload: dict[str, Any]) -> dict[str, Any]:
    """``payload`` with its scalars to two levels, texts cut to :data:`TEXT_CHARS`."""
    out: dict[str, Any] = {}
    for key, value in payload.items():
        if isinstance(value, dict):
            out[key] = {k: _cut(v) for k, v in value.items() if _scalar(v)}
        elif _scalar(value):
            out[key] = _cut(value)
    return out


def _scalar(value: Any) -> bool:
    return value is None or isinstance(value, (str, int, float, bool))


def _cut(value: Any) -> Any:
    if isinstance(value, str) and len(value) > TEXT_CHARS:
        return value[:TEXT_CHARS] + ELLIPSIS
    return value
