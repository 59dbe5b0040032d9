"""The parameters every text-to-video model shares; plugins subclass with their own rules."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any, ClassVar, Self

import annotated_types
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from arc_fabric_core.contract.bounds import (
    CHARS_PER_TOKEN,
    MAX_TEXT_TOKENS,
    AtMost,
    bound_of,
    field_error,
    prompt_chars,
)
from arc_fabric_core.contract.speed import (
    SPEED_FIELDS,
    AttentionChoice,
    BatchGuidance,
    StepCache,
    batch_as_bool,
    cache_by_name,
)

# What SQLite and torch hold: a larger whole number is refused with its field here rather
# than overflowing later in a scheduler, a tensor size or the job queue.
INT64_MAX = 2**63 - 1
# torch generators take a uint64 seed.
SEED_MAX = 2**64 - 1

# Bounds a plugin's own fields may reuse (or tighten from its model's sizes: its
# positional tables, its text encoder). The shared fields keep these even where a plugin
# redeclares a field without a bound of its own.
MAX_STEPS = 1000
Steps = Annotated[
    int,
    AtMost(MAX_STEPS, "a schedule spans 1000 training timesteps; more steps only repeat them"),
]
Prompt = Annotated[
    str,
    AtMost(
        prompt_chars(MAX_TEXT_TOKENS),
        f"{CHARS_PER_TOKEN} characters for each of the {MAX_TEXT_TOKENS} tokens a text encoder here keeps at most",
    ),
]
# Backstops for a plugin that declares no bound: beyond every shipped model's own bound
# (Wan's rotary table: 4093 frames, 16384 pixels), so that one number cannot ask for
# terabytes; the memory estimate at planning is the closer check.
Frames = Annotated[int, AtMost(10_000, "over ten minutes at 16 fps; a model's plugin may allow more")]
Pixels = Annotated[int, AtMost(16_384, "16K; a model's plugin may allow more")]


class GenerationParams(BaseModel):
    """Common generation parameters. A plugin subclasses this to set its defaults
    and add its own fields and checks (e.g. Wan's 4k+1 frames)."""

    # coerce_numbers_to_str: prompt=2026 from a command line is the text "2026".
    # allow_inf_nan=False: an infinite or NaN float (guidance=inf, JSON Infinity) would run
    # to the end with every latent NaN; every float field of every model refuses it.
    model_config = ConfigDict(extra="forbid", frozen=True, coerce_numbers_to_str=True, allow_inf_nan=False)

    # Fields that fix the schedule or the latent shape. A fork or an edit continues an
    # existing trajectory, so it may change any field but these (a plugin adds its own,
    # e.g. Wan's flow shift).
    fixed_fields: ClassVar[frozenset[str]] = frozenset({"steps", "num_frames", "height", "width"})

    prompt: Prompt = Field("", description="What the video shows.")
    negative_prompt: Prompt = Field("", description="What to steer away from (used with guidance > 1).")
    seed: int = Field(0, ge=0, le=SEED_MAX, description="Seed for the initial noise (0 to 2^64 - 1).")
    steps: Steps = Field(50, ge=1, description="Number of denoising steps.")
    num_frames: Frames = Field(81, ge=1, description="Frames in the output video.")
    height: Pixels = Field(480, ge=1, description="Output height in pixels.")
    width: Pixels = Field(832, ge=1, description="Output width in pixels.")
    guidance: float = Field(5.0, ge=0.0, description="Classifier-free guidance scale; <= 1 disables it.")
    fps: int = Field(16, ge=1, le=240, description="Frames per second of the written video.")
    # Speed (contract.speed): how the steps run, not what they compute; a fork may change them.
    attention: AttentionChoice = Field(
        "native",
        description="Attention kernel: native (torch SDPA, diffusers' default), auto (the fastest one installed "
        "that works for this model on this device, checked once), or a diffusers backend by name.",
    )
    compile: bool = Field(False, description="Regional compilation of the transformer's repeated blocks.")
    cache: StepCache | None = Field(
        None,
        description="A step cache: fbc, magcache or taylorseer (a name, or its settings, "
        '{"name": "fbc", "threshold": 0.05}); none runs every step in full.',
    )
    # auto by default: as the model's diffusers pipeline does (two passes for Wan, one batch
    # for LTX), so a session equals the pipeline bit for bit on every device.
    batch_guidance: BatchGuidance = Field(
        "auto",
        description="The conditional and unconditional passes in one batch: on, off, or auto (as the model's "
        "diffusers pipeline does: two passes for Wan and DreamDojo, one batch for LTX).",
    )

    def stored(self) -> dict[str, Any]:
        """The parameters as a session's document keeps them: every field, but the speed
        settings (contract.speed) only where they differ from their defaults — a document
        names what its video is, and how it was sped up only when it was."""
        values = self.model_dump()
        for name in SPEED_FIELDS:
            if name in values and values[name] == type(self).model_fields[name].default:
                del values[name]
        return values

    @field_validator("cache", mode="before")
    @classmethod
    def _cache_by_name(cls, value: Any) -> Any:
        return cache_by_name(value)

    @field_validator("batch_guidance", mode="before")
    @classmethod
    def _batch_as_bool(cls, value: Any) -> Any:
        return batch_as_bool(value)

    @field_validator("*", mode="after")
    @classmethod
    def _fits_64_bits(cls, value: Any, info: ValidationInfo) -> Any:
        """Every whole number (in lists too) of a field without an upper bound of its own
        fits in 64 bits; a field's own bound (seed's, a size's, a plugin's) speaks for itself."""
        field = cls.model_fields.get(info.field_name or "")
        if field is not None and any(
            isinstance(m, annotated_types.Le | annotated_types.Lt | AtMost) for m in field.metadata
        ):
            return value
        for n in _whole_numbers(value):
            if n > INT64_MAX:
                raise ValueError(f"must be at most {INT64_MAX} (a 64-bit integer), got {n}")
            if n < -INT64_MAX - 1:
                raise ValueError(f"must be at least {-INT64_MAX - 1} (a 64-bit integer), got {n}")
        return value

    @model_validator(mode="after")
    def _shared_bounds(self) -> Self:
        """A plugin that redeclares a shared size without a bound of its own keeps the shared one."""
        for name in ("prompt", "negative_prompt", "steps", "num_frames", "height", "width"):
            if bound_of(type(self), name) is None:
                bound = bound_of(GenerationParams, name)
                assert bound is not None
                value = getattr(self, name)
                try:
                    bound.check(value)
                except ValueError as exc:
                    raise field_error(type(self), name, str(exc), value) from None
        return self


def _whole_numbers(value: Any) -> Iterator[int]:
    if isinstance(value, int) and not isinstance(value, bool):
        yield value
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _whole_numbers(item)


def multiple_of(value: int, n: int) -> int:
    """``value`` if it is a multiple of ``n``; else the error a field validator raises,
    naming the two nearest allowed sizes (the sizes a VAE and patching accept)."""
    if value % n:
        lo = value - value % n
        raise ValueError(f"must be a multiple of {n}; nearest: {lo or n} or {lo + n}")
    return value
