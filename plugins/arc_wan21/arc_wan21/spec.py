"""What Wan 2.1 is to the framework: its variants, parameters and latent space."""

from __future__ import annotations

from typing import Annotated, ClassVar

from pydantic import Field, field_validator

from arc_fabric_core.contract.bounds import AtMost
from arc_fabric_core.contract.models import LatentSpace, ModelSpec, VariantSpec
from arc_fabric_core.contract.params import GenerationParams, Prompt, Steps, multiple_of
from arc_fabric_core.kit.tiny_wan import ROPE_POSITIONS as TINY_ROPE_POSITIONS  # the tiny transformers'

# Our wording of the usual Wan negative prompt (the official one is in Chinese).
DEFAULT_NEGATIVE_PROMPT = (
    "vivid oversaturated colors, overexposed, static, blurry details, subtitles, painting, still image, "
    "grey cast, worst quality, low quality, JPEG artifacts, ugly, mutilated, extra fingers, badly drawn hands, "
    "badly drawn face, deformed, disfigured, malformed limbs, fused fingers, motionless, cluttered background, "
    "three legs, crowded background, walking backwards"
)

COMPONENTS = ("model_index.json", "scheduler", "text_encoder", "tokenizer", "transformer", "vae")

# Wan's rotary embedding is a table of positions per axis (the transformer's
# rope_max_seq_len): latent frames (4 frames each, the VAE's 4x in time over a 1-frame
# patch) and latent rows and columns (16 pixels each: the VAE's 8x, then 2x2 patches).
# A size past the table fails inside the transformer, so it is refused up front.
ROPE_POSITIONS = 1024  # the published 1.3B and 14B configs
FRAMES_PER_POSITION = 4
PIXELS_PER_POSITION = 16


def rope_bounds(positions: int, which: str) -> dict[str, AtMost]:
    """The largest frame count and size a rotary table of ``positions`` places."""
    table = f"{which} rotary table holds {positions} positions"
    frames = AtMost((positions - 1) * FRAMES_PER_POSITION + 1, f"{table}, a latent frame of 4 frames each")
    pixels = AtMost(positions * PIXELS_PER_POSITION, f"{table}, 16 pixels each")
    return {"num_frames": frames, "height": pixels, "width": pixels}


_ROPE = rope_bounds(ROPE_POSITIONS, "Wan's")
_TINY_ROPE = rope_bounds(TINY_ROPE_POSITIONS, "the tiny transformer's")


class WanParams(GenerationParams):
    """Wan 2.1 parameters; defaults from the official repository (832x480, 81 frames, 50 steps)."""

    negative_prompt: Prompt = Field(DEFAULT_NEGATIVE_PROMPT, description="What to steer away from.")
    steps: Steps = Field(50, ge=1, description="Number of denoising steps (UniPC flow solver).")
    num_frames: Annotated[int, _ROPE["num_frames"]] = Field(
        81, ge=1, description="Frames in the output video; must be 4k+1."
    )
    height: Annotated[int, _ROPE["height"]] = Field(480, ge=16, description="Height in pixels; a multiple of 16.")
    width: Annotated[int, _ROPE["width"]] = Field(832, ge=16, description="Width in pixels; a multiple of 16.")
    guidance: float = Field(5.0, ge=0.0, description="Classifier-free guidance scale; <= 1 runs without CFG.")
    fps: int = Field(16, ge=1, le=240, description="Frames per second of the written video.")
    shift: float = Field(5.0, gt=0.0, description="Flow shift of the sigma schedule (official default 5).")
    max_sequence_length: int = Field(512, ge=1, le=512, description="Prompt tokens kept by the text encoder.")

    # The shift shapes the sigma schedule, so a fork or edit cannot change it.
    fixed_fields: ClassVar[frozenset[str]] = GenerationParams.fixed_fields | {"shift"}

    @field_validator("num_frames")
    @classmethod
    def _frames_4k1(cls, v: int) -> int:
        if v % 4 != 1:
            lo = v - (v - 1) % 4
            raise ValueError(f"must be 4k+1 (e.g. 17, 33, 81); nearest: {lo} or {lo + 4}")
        return v

    @field_validator("height", "width")
    @classmethod
    def _multiple_of_16(cls, v: int) -> int:
        return multiple_of(v, 16)


TINY_LARGE = "tiny-14b"
# Small enough that a run with the defaults takes seconds on a CPU (33 frames at 256x256 took about a minute).
TINY_DEFAULTS = {"num_frames": 17, "height": 128, "width": 128, "steps": 20}

WAN21 = ModelSpec(
    name="wan21",
    description="Wan 2.1 text-to-video (UMT5 text encoder, Wan VAE, flow-matching DiT).",
    params=WanParams,
    latent_space=LatentSpace(family="wan-vae", channels=16, temporal_compression=4, spatial_compression=8),
    variants=(
        VariantSpec(
            name="1.3b",
            description="Wan2.1-T2V-1.3B-Diffusers from a local folder.",
            weights_env="ARC_WAN21_1_3B_WEIGHTS",
            required_components=COMPONENTS,
        ),
        VariantSpec(
            name="14b",
            description="Wan2.1-T2V-14B-Diffusers from a local folder.",
            weights_env="ARC_WAN21_14B_WEIGHTS",
            required_components=COMPONENTS,
        ),
        VariantSpec(
            name="tiny",
            description="The same classes at tiny sizes with random weights: output is noise; for trying every path.",
            tiny=True,
            param_defaults=TINY_DEFAULTS,
            stands_in_for=("1.3b",),
            param_bounds=_TINY_ROPE,
        ),
        VariantSpec(
            name=TINY_LARGE,
            description="A bigger tiny transformer over the same tiny text encoder and VAE: 14B's stand-in in hybrids.",
            tiny=True,
            param_defaults=TINY_DEFAULTS,
            stands_in_for=("14b",),
            param_bounds=_TINY_ROPE,
        ),
    ),
)
