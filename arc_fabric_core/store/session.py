"""A session's persistent document: everything but the tensors, which live beside it."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field, field_validator

# Major.minor. A reader refuses a newer major version.
# 1.1 added lineage (operation, overrides, edit); 1.2 hybrid stages and passes.
FORMAT_VERSION = "1.2"

# Key of the final latents in latents.safetensors: (B, C, F, H, W) float32, the
# layout diffusers returns with output_type="latent".
LATENTS_KEY = "latents"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


# What new_session_id makes: the only ids an API path or a job may name.
SESSION_ID = r"^[0-9]{8}-[0-9]{6}-[0-9a-f]{8}$"


def step_ranges(steps: list[int]) -> str:
    """[0, 1, 2, 5, 6] -> '0-2, 5-6' (in any order)."""
    runs: list[list[int]] = []
    for step in sorted(steps):
        if runs and step == runs[-1][-1] + 1:
            runs[-1].append(step)
        else:
            runs.append([step])
    return ", ".join(str(r[0]) if len(r) == 1 else f"{r[0]}-{r[-1]}" for r in runs)


def new_session_id() -> str:
    return datetime.now(UTC).strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:8]


class SessionStatus(StrEnum):
    CREATED = "created"
    RUNNING = "running"
    PAUSED = "paused"
    COMPLETED = "completed"
    FAILED = "failed"


class Operation(StrEnum):
    """How a session came to be: the edge to its parent in the lineage tree."""

    CREATE = "create"
    FORK = "fork"
    EDIT = "edit"
    EXTEND = "extend"


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


class EditInfo(BaseModel):
    """What an edit re-denoises: from which step, from which source, inside which mask."""

    start_step: int
    # "final": the parent's final latents; "estimate": its clean estimate at source_step.
    source: str
    source_step: int
    # Pixel-space mask as the user gave it (x0, y0, x1, y1; frames [start, end)); None = everywhere.
    rect: tuple[int, int, int, int] | None = None
    frames: tuple[int, int] | None = None
    mask_image: str | None = None
    # Share of the latent video the mask covers (1.0 without a mask).
    coverage: float = 1.0
    # x0 (source clean latents), noise, and the latent mask; written when the edit is created.
    tensors: FileRecord | None = None


class StageInfo(BaseModel):
    """One stage of a hybrid schedule: the model that runs it, and where it hands over."""

    model: ModelInfo
    guidance: float | None = None
    # The boundary as configured (unit in SessionDoc.boundary_unit); None for the last stage.
    boundary: float | None = None
    # The step it hands over at, once the schedule is known (a timestep boundary needs it).
    end_step: int | None = None
    # Stages whose model differs from stage 0's encode the prompt with their own encoder.
    conditioning: FileRecord | None = None


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
    # The noise level of each step (flow schedules), for sigma boundaries.
    sigmas: list[float] = Field(default_factory=list)
    conditioning: FileRecord | None = None
    # Inputs beside text by name (ModelSpec.inputs), checked when the session was made:
    # content-hashed files under inputs/, shared with its forks.
    inputs: dict[str, FileRecord] = Field(default_factory=dict)
    checkpoints: list[CheckpointRecord] = Field(default_factory=list)
    final: FileRecord | None = None
    # Lineage: the session this one was forked or edited from, at which step, and how.
    # An Operation for the built-in ones; a plugin's operation may make sessions of its own kind.
    operation: str = Operation.CREATE
    parent: str | None = None
    parent_step: int | None = None
    overrides: dict[str, Any] = Field(default_factory=dict)
    edit: EditInfo | None = None
    # An extension: the parent's final latents (shared), which its first frames continue.
    extends: FileRecord | None = None
    # A hybrid schedule: the stages over the steps (empty: ``model`` runs every step).
    schedule_name: str | None = None
    boundary_unit: str = "fraction"
    stages: list[StageInfo] = Field(default_factory=list)
    # Steps of each pass of a multi-pass model (empty: one pass of total_steps).
    passes: list[int] = Field(default_factory=list)
    # The attention backend each stage model ran with (params.attention resolved, 'auto'
    # included), by model label: a resume runs the same kernel.
    attention_backends: dict[str, str] = Field(default_factory=dict)
    error: str | None = None

    @field_validator("operation", mode="after")
    @classmethod
    def _known_operation(cls, value: str) -> str:
        return Operation(value) if value in Operation._value2member_map_ else value

    def touch(self) -> None:
        self.updated_at = _now()
