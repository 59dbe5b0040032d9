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
