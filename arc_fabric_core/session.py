"""A session's persistent document: everything but the tensors, which live beside it."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field

# Major.minor. A reader refuses a newer major version.
FORMAT_VERSION = "1.0"

# Key of the final latents in latents.safetensors: (B, C, F, H, W) float32, the
# layout diffusers returns with output_type="latent".
LATENTS_KEY = "latents"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def new_session_id() -> str:
    return datetime.now(UTC).strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:8]


class SessionStatus(StrEnum):
    CREATED = "created"
    RUNNING = "running"
    PAUSED = "paused"
    COMPLETED = "completed"
    FAILED = "failed"


class FileRecord(BaseModel):
    """A tensor file of the session, with the checksum it was written with."""

    file: str
    sha256: str
    bytes: int


class CheckpointRecord(FileRecord):
    step: int


class ModelInfo(BaseModel):
    name: str
    variant: str
    weights: str | None = None


class SessionDoc(BaseModel):
    """session.json: a versioned description of the session and its files."""

    format_version: str = FORMAT_VERSION
    id: str = Field(default_factory=new_session_id)
    created_at: str = Field(default_factory=_now)
    updated_at: str = Field(default_factory=_now)
    model: ModelInfo
    params: dict[str, Any]
    device: str = "cpu"
    dtype: str = "auto"
    status: SessionStatus = SessionStatus.CREATED
    step_index: int = 0
    total_steps: int
    timesteps: list[float] = Field(default_factory=list)
    conditioning: FileRecord | None = None
    checkpoints: list[CheckpointRecord] = Field(default_factory=list)
    final: FileRecord | None = None
    # Lineage: the session this one was forked or edited from, and at which step.
    parent: str | None = None
    parent_step: int | None = None
    error: str | None = None

    def touch(self) -> None:
        self.updated_at = _now()
