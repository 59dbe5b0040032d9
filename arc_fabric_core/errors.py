"""Errors that reach the user as one clear line, never a traceback."""

from __future__ import annotations


class ArcFabricError(Exception):
    """Base class for every error the CLI reports as a single line."""


class InputError(ArcFabricError, ValueError):
    """Bad input, detected before any compute. ``field`` names what to fix."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}")


class UnknownModelError(InputError):
    def __init__(self, name: str, installed: list[str]) -> None:
        listing = ", ".join(sorted(installed)) or "none (install a plugin such as arc-wan21)"
        super().__init__("model", f"unknown model {name!r}; installed models: {listing}")


class WeightsError(InputError):
    """A real variant was asked for but its local checkpoint is missing or incomplete."""


class SessionError(ArcFabricError):
    """A session cannot be read, written or continued."""


class DamagedSessionError(SessionError):
    """A session folder whose session.json is not a readable session document.

    Only that session is affected: every other one lists, opens and runs as before."""

    def __init__(self, session_id: str, path: str, reason: str) -> None:
        self.session_id = session_id
        self.path = path
        self.reason = reason
        super().__init__(
            f"session {session_id} is damaged: {path}: {reason}; other sessions are unaffected, and "
            f"`sessions repair {session_id}` rebuilds its document from its newest intact checkpoint"
        )


class EnvError(ArcFabricError):
    """A plugin environment could not be created or updated (venv or pip failed).

    The message carries the tail of the failing tool's output, so the cause is visible
    without re-running it by hand."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}")
