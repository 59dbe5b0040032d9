"""The parameters every text-to-video model shares; plugins subclass with their own rules."""

from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field


class GenerationParams(BaseModel):
    """Common generation parameters. A plugin subclasses this to set its defaults
    and add its own fields and checks (e.g. Wan's 4k+1 frames)."""

    # coerce_numbers_to_str: prompt=2026 from a command line is the text "2026".
    model_config = ConfigDict(extra="forbid", frozen=True, coerce_numbers_to_str=True)

    # Fields that fix the schedule or the latent shape. A fork or an edit continues an
    # existing trajectory, so it may change any field but these (a plugin adds its own,
    # e.g. Wan's flow shift).
    fixed_fields: ClassVar[frozenset[str]] = frozenset({"steps", "num_frames", "height", "width"})

    prompt: str = Field("", description="What the video shows.")
    negative_prompt: str = Field("", description="What to steer away from (used with guidance > 1).")
    seed: int = Field(0, ge=0, description="Seed for the initial noise.")
    steps: int = Field(50, ge=1, description="Number of denoising steps.")
    num_frames: int = Field(81, ge=1, description="Frames in the output video.")
    height: int = Field(480, ge=1, description="Output height in pixels.")
    width: int = Field(832, ge=1, description="Output width in pixels.")
    guidance: float = Field(5.0, ge=0.0, description="Classifier-free guidance scale; <= 1 disables it.")
    fps: int = Field(16, ge=1, le=240, description="Frames per second of the written video.")


def multiple_of(value: int, n: int) -> int:
    """``value`` if it is a multiple of ``n``; else the error a field validator raises,
    naming the two nearest allowed sizes (the sizes a VAE and patching accept)."""
    if value % n:
        lo = value - value % n
        raise ValueError(f"must be a multiple of {n}; nearest: {lo or n} or {lo + n}")
    return value
