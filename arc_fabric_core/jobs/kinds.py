"""The kinds of job the queue takes and the payload keys each one has."""

from __future__ import annotations

# What each kind of job asks of the engine; the payload's keys are checked on submit.
KINDS: dict[str, tuple[set[str], set[str]]] = {
    # kind: (required keys, optional keys)
    "generate": ({"model", "params"}, {"variant", "weights", "schedule"}),
    "resume": ({"session"}, {"until"}),
    "fork": ({"session", "step"}, {"overrides"}),
    "edit": ({"session"}, {"step", "strength", "overrides", "mask"}),
    # Autoregressive models only.
    "extend": ({"session", "blocks"}, {"prompt"}),
    "rewind": ({"session", "block"}, {"prompt", "overrides"}),
    # The video of a session's final latents, or a checkpoint's preview, made where its model is.
    "decode": ({"session"}, {"step"}),
}
