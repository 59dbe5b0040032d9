"""What LTX-Video is to the framework: its variants, parameters and latent space."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise
from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

from arc_fabric_core.contract.bounds import AtMost
from arc_fabric_core.contract.models import LatentSpace, ModelSpec, VariantSpec
from arc_fabric_core.contract.params import MAX_STEPS, GenerationParams, Prompt, Steps, multiple_of

DEFAULT_NEGATIVE_PROMPT = "worst quality, inconsistent motion, blurry, jittery, distorted"

# The timestep-distilled 0.9.8 checkpoints' own schedules (in units of 1000 training timesteps).
# One pass: eight steps down to 421, then the last step lands on a clean video.
DISTILLED_TIMESTEPS = [1000.0, 993.0, 987.0, 981.0, 975.0, 909.0, 725.0, 421.0]
# Multi-scale: seven steps at the reduced size, then three at twice that size after re-noising to 909.
DISTILLED_PASS1_TIMESTEPS = DISTILLED_TIMESTEPS[:-1]
PASS2_TIMESTEPS = [909.0, 725.0, 421.0]

# The sizes LTX's pipelines accept: multiples of 32 pixels, 8k+1 frames.
SIZE_MULTIPLE = 32
FRAME_MULTIPLE = 8

# LTX's rotary positions are fractions of a base (the transformer's base_height, base_width
# and base_num_frames): pixels of 2048, and time in seconds of 20 (the pipeline places
# a frame at its index / fps). Past the base a position leaves the range [-1, 1] the model
# was trained in; the published sizes stay far inside it (704x480, 257 frames at 30 fps).
ROPE_BASE_PIXELS = 2048
ROPE_BASE_SECONDS = 20
MAX_FPS = 240
_PIXELS = AtMost(ROPE_BASE_PIXELS, "LTX's rotary positions are fractions of 2048 pixels")


def max_frames(fps: int) -> int:
    """The most frames (8k+1) whose positions stay within LTX's 20 seconds at ``fps``."""
    return ROPE_BASE_SECONDS * fps // FRAME_MULTIPLE * FRAME_MULTIPLE + 1


_FRAMES = AtMost(max_frames(MAX_FPS), f"LTX's rotary positions span 20 s of video, at most {MAX_FPS} fps")
_TIMESTEPS = AtMost(MAX_STEPS, "one per step")

COMPONENTS = ("model_index.json", "scheduler", "text_encoder", "tokenizer", "transformer", "vae")
UPSAMPLER_ENV = "ARC_LTX_UPSAMPLER_WEIGHTS"
UPSAMPLER_SUBFOLDER = "latent_upsampler"


def _field_error(field: str, message: str, value: Any) -> ValidationError:
    """A validation error located at ``field`` (a model validator's own errors have no location)."""
    error = PydanticCustomError("value_error", message)
    return ValidationError.from_exception_data("LTXParams", [InitErrorDetails(type=error, loc=(field,), input=value)])


def _as_bool(value: Any) -> bool:
    """A boolean as pydantic reads one (a command line gives "true" or "0")."""
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "t", "yes", "y", "on")
    return bool(value)


def _as_int(value: Any) -> Any:
    try:
        return int(value)
    except (TypeError, ValueError):
        return value


def _check_timesteps(v: list[float] | None) -> list[float] | None:
    if v is None:
        return v
    if not v:
        raise ValueError("needs at least one timestep (or null for the default schedule)")
    if any(not 0 < t <= 1000 for t in v):
        raise ValueError("timesteps are in (0, 1000] (1000 = pure noise)")
    if any(a <= b for a, b in pairwise(v)):
        raise ValueError("timesteps must fall strictly (denoising goes from noise to clean)")
    return [float(t) for t in v]


class LTXParams(GenerationParams):
    """LTX-Video parameters; defaults from the 0.9.8 release (704x480, 97 frames, 30 fps).

    The schedule: ``timesteps`` when given (``steps`` is then their count), else the
    distilled schedule of ``timestep_schedule=distilled``, else ``steps`` steps of
    LTX's linear-quadratic schedule. ``multiscale`` denoises at ``downscale_factor`` of
    the size first, upsamples the latents 2x, and refines with ``pass2_timesteps``.
    """

    negative_prompt: Prompt = Field(DEFAULT_NEGATIVE_PROMPT, description="What to steer away from (guidance > 1).")
    steps: Steps = Field(30, ge=1, description="Denoising steps (of the first pass when multi-scale).")
    num_frames: Annotated[int, _FRAMES] = Field(
        97, ge=1, description="Frames in the output video; must be 8k+1, and at most 20 s at fps."
    )
    height: Annotated[int, _PIXELS] = Field(480, ge=32, description="Height in pixels; a multiple of 32.")
    width: Annotated[int, _PIXELS] = Field(704, ge=32, description="Width in pixels; a multiple of 32.")
    guidance: float = Field(3.0, ge=0.0, description="Classifier-free guidance scale; <= 1 runs without CFG.")
    fps: int = Field(30, ge=1, le=MAX_FPS, description="Frames per second: of the video, and of the model's time axis.")
    guidance_rescale: float = Field(0.0, ge=0.0, le=1.0, description="CFG rescale (only with guidance > 1).")
    max_sequence_length: int = Field(128, ge=1, le=512, description="Prompt tokens kept by the text encoder.")
    timestep_schedule: Literal["linear-quadratic", "distilled"] = Field(
        "linear-quadratic",
        description="Without timesteps: the distilled checkpoints' schedule (8 steps; 7 + 3 multi-scale), "
        "or LTX's linear-quadratic schedule of `steps` steps.",
    )
    timesteps: Annotated[list[float], _TIMESTEPS] | None = Field(
        None, description="Custom timesteps in (0, 1000], falling (of the first pass when multi-scale)."
    )
    multiscale: bool = Field(False, description="Denoise at a reduced size, upsample the latents 2x, refine.")
    downscale_factor: float = Field(2 / 3, gt=0.0, le=1.0, description="Size of the first pass (multi-scale).")
    pass2_timesteps: Annotated[list[float], _TIMESTEPS] = Field(
        default_factory=lambda: list(PASS2_TIMESTEPS),
        description="Timesteps of the refinement pass (multi-scale); it starts re-noised to the first.",
    )
    adain_factor: float = Field(1.0, ge=0.0, le=10.0, description="Match the upsampled latents' statistics (0 = off).")
    tone_map_compression_ratio: float = Field(
        0.0, ge=0.0, le=1.0, description="Tone-map the upsampled latents (0 = off; 0.6 suggested for 0.9.8)."
    )
    decode_timestep: float = Field(0.05, ge=0.0, le=1.0, description="Decoder timestep (timestep-aware VAEs).")
    decode_noise_scale: float | None = Field(
        0.025, ge=0.0, le=1.0, description="Noise mixed in before decoding (null = decode_timestep)."
    )

    fixed_fields: ClassVar[frozenset[str]] = GenerationParams.fixed_fields | {
        "timestep_schedule",
        "timesteps",
        "multiscale",
        "downscale_factor",
        "pass2_timesteps",
    }

    @model_validator(mode="before")
    @classmethod
    def _resolve_schedule(cls, data: Any) -> Any:
        """Make the first pass's timesteps explicit and ``steps`` their count."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        for key in ("timesteps", "pass2_timesteps"):
            # A config's list (Hydra's ListConfig) is a sequence, not a list.
            if isinstance(data.get(key), Sequence) and not isinstance(data[key], str):
                data[key] = list(data[key])
        timesteps = data.get("timesteps")
        if timesteps is None and data.get("timestep_schedule") == "distilled":
            timesteps = DISTILLED_PASS1_TIMESTEPS if _as_bool(data.get("multiscale")) else DISTILLED_TIMESTEPS
            data["timesteps"] = list(timesteps)
            other = "set timestep_schedule=linear-quadratic"
            given = "the distilled schedule"
        else:
            distilled = data.get("timestep_schedule") == "distilled"
            other = "drop timesteps" + (" and set timestep_schedule=linear-quadratic" if distilled else "")
            given = "timesteps"
        if isinstance(timesteps, list) and timesteps:
            steps = data.get("steps")
            if steps is not None and _as_int(steps) != len(timesteps):
                raise _field_error(
                    "steps",
                    f"{given} has {len(timesteps)} steps, not {steps}: leave steps out (or give {len(timesteps)}), "
                    f"or {other} for {steps} steps of LTX's linear-quadratic schedule",
                    steps,
                )
            data["steps"] = len(timesteps)
        return data

    @field_validator("timesteps")
    @classmethod
    def _timesteps_fall(cls, v: list[float] | None) -> list[float] | None:
        return _check_timesteps(v)

    @field_validator("pass2_timesteps")
    @classmethod
    def _pass2_timesteps_fall(cls, v: list[float]) -> list[float]:
        checked = _check_timesteps(v)
        assert checked is not None
        return checked

    @field_validator("num_frames")
    @classmethod
    def _frames_8k1(cls, v: int) -> int:
        if v % FRAME_MULTIPLE != 1:
            lo = max(v - (v - 1) % FRAME_MULTIPLE, 1)
            raise ValueError(f"must be 8k+1 (e.g. 9, 17, 97, 121); nearest: {lo} or {lo + FRAME_MULTIPLE}")
        return v

    @field_validator("height", "width")
    @classmethod
    def _multiple_of_32(cls, v: int) -> int:
        return multiple_of(v, SIZE_MULTIPLE)

    @model_validator(mode="after")
    def _within_rope_seconds(self) -> LTXParams:
        most = max_frames(self.fps)
        if self.num_frames > most:
            raise _field_error(
                "num_frames",
                f"at most {most} at fps={self.fps} (LTX's rotary positions span {ROPE_BASE_SECONDS} s of video); "
                f"got {self.num_frames}: lower num_frames or raise fps",
                self.num_frames,
            )
        return self

    @model_validator(mode="after")
    def _first_pass_fits(self) -> LTXParams:
        if self.multiscale:
            h, w = self.pass_size(0)
            if min(h, w) < SIZE_MULTIPLE:
                raise _field_error(
                    "downscale_factor",
                    f"makes the first pass {w}x{h}, below 32 pixels: raise it (to at least "
                    f"{SIZE_MULTIPLE / min(self.height, self.width):.3g} here) or the size",
                    self.downscale_factor,
                )
        return self

    def pass_size(self, pass_index: int) -> tuple[int, int]:
        """(height, width) in pixels that pass ``pass_index`` denoises at.

        Multi-scale: the first pass at ``downscale_factor`` of the size, rounded down to
        a multiple of 32 (as LTX's own multi-scale recipe does); the second at twice
        that, which the latent upsampler gives. The decode resizes to height x width.
        """
        if not self.multiscale:
            return self.height, self.width
        h, w = (int(x * self.downscale_factor) for x in (self.height, self.width))
        h, w = h - h % SIZE_MULTIPLE, w - w % SIZE_MULTIPLE
        return (h, w) if pass_index == 0 else (2 * h, 2 * w)

    def pass_timesteps(self, pass_index: int) -> list[float] | None:
        """Timesteps of pass ``pass_index``; None: LTX's linear-quadratic schedule of ``steps``."""
        return self.timesteps if pass_index == 0 else self.pass2_timesteps

    def passes(self) -> list[int]:
        """Steps of each pass."""
        return [self.steps, len(self.pass2_timesteps)] if self.multiscale else [self.steps]


TINY = "tiny"
TINY_LARGE = "tiny-13b"
# A tiny run: 9 frames at 96x64 (3 x 16 x 24 latents), the distilled 8 steps without CFG.
TINY_DEFAULTS: dict[str, Any] = {
    "num_frames": 9,
    "height": 64,
    "width": 96,
    "timestep_schedule": "distilled",
    "guidance": 1.0,
}
DISTILLED_DEFAULTS: dict[str, Any] = {"timestep_schedule": "distilled", "guidance": 1.0}

LTX_LATENT_SPACE = LatentSpace(family="ltx-vae", channels=128, temporal_compression=8, spatial_compression=32)
# The tiny VAE compresses 4x in time and space into 8 channels.
TINY_LATENT_SPACE = LatentSpace(family="ltx-vae-tiny", channels=8, temporal_compression=4, spatial_compression=4)


def _real(name: str, size: str, kind: str) -> VariantSpec:
    distilled = kind == "distilled"
    return VariantSpec(
        name=name,
        description=f"LTX-Video 0.9.8 {size} {kind} in the diffusers layout (LTXConditionPipeline) from a local folder."
        + (" Timestep-distilled: 8 steps, no CFG." if distilled else ""),
        weights_env=f"ARC_LTX_{size.upper()}_{kind.upper()}_WEIGHTS",
        required_components=COMPONENTS,
        param_defaults=dict(DISTILLED_DEFAULTS) if distilled else {},
    )


LTX = ModelSpec(
    name="ltx",
    description="LTX-Video text-to-video (T5 text encoder, LTX video VAE, flow-matching DiT; multi-scale with a "
    "latent upsampler).",
    params=LTXParams,
    latent_space=LTX_LATENT_SPACE,
    variants=(
        _real("2b-distilled", "2b", "distilled"),
        _real("2b-dev", "2b", "dev"),
        _real("13b-distilled", "13b", "distilled"),
        _real("13b-dev", "13b", "dev"),
        VariantSpec(
            name=TINY,
            description="The same classes at tiny sizes with random weights: output is noise; for trying every path.",
            tiny=True,
            param_defaults=TINY_DEFAULTS,
            stands_in_for=("2b-distilled", "2b-dev"),
            latent_space=TINY_LATENT_SPACE,
        ),
        VariantSpec(
            name=TINY_LARGE,
            description="A bigger tiny transformer over the same tiny text encoder and VAE: 13B's stand-in in hybrids.",
            tiny=True,
            param_defaults=TINY_DEFAULTS,
            stands_in_for=("13b-distilled", "13b-dev"),
            latent_space=TINY_LATENT_SPACE,
        ),
    ),
)
