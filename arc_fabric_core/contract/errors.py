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


class OutputError(ArcFabricError):
    """A result file (a video) could not be written. The file that was there before, if
    any, is left as it was. ``errno`` is the OS reason when one is known (ENOSPC...)."""

    def __init__(self, path: object, reason: str, errno: int | None = None) -> None:
        self.path = path
        self.reason = reason
        self.errno = errno
        super().__init__(f"cannot write {path}: {reason}")

    @property
    def out_of_space(self) -> bool:
        """The disk (or a quota, or a file size limit) is full: not the request's fault."""
        import errno

        return self.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT)


# What a session document keeps of an error: the reason, not a page of it.
ERROR_TEXT_LIMIT = 400


def brief(text: str, limit: int = ERROR_TEXT_LIMIT) -> str:
    """``text`` on one line (runs of whitespace collapsed), cut to ``limit`` characters."""
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1].rstrip() + "…"
