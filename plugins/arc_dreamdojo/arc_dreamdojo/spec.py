"""What DreamDojo is to the framework: its variants, parameters, inputs and latent space.

DreamDojo predicts a robot's camera video from its first frame and its joint actions,
a chunk at a time: 12 actions make 12 new frames (3 latent frames, after the
conditioning one). A session of k chunks is k passes of ``steps`` steps; its latents
hold each chunk's 4 latent frames side by side, ``[1, 16, 4k, H/8, W/8]``, the first of
each being its conditioning frame.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field, field_validator

from arc_fabric_core.contract.inputs import InputSpec
from arc_fabric_core.contract.models import LatentSpace, ModelSpec, VariantSpec
from arc_fabric_core.contract.params import GenerationParams, Prompt, multiple_of

ACTIONS_PER_CHUNK = 12
FRAMES_PER_CHUNK = ACTIONS_PER_CHUNK  # new frames; the chunk's video has one more (its first)
LATENT_FRAMES_PER_CHUNK = 1 + ACTIONS_PER_CHUNK // 4
ACTION_DIM = 384

# Where each embodiment's dims lie in the unified 384-dim action vector (the authors'
# docs/POSTTRAIN.md), and its dataset's frame stride (20 Hz recordings to 10 fps, 30 Hz to 7.5).
EMBODIMENTS: dict[str, tuple[int, int]] = {"gr1": (0, 29), "g1": (58, 101), "yam": (101, 147), "agibot": (147, 169)}
EMBODIMENT_NAMES = {"gr1": "Fourier GR-1", "g1": "Unitree G1", "yam": "YAM", "agibot": "AgiBot"}


def chunks_of(num_frames: int) -> int:
    return (num_frames - 1) // FRAMES_PER_CHUNK


class DreamDojoParams(GenerationParams):
    """DreamDojo parameters; defaults from the authors' GR-1 evaluation (49 frames at
    480x640, 35 UniPC steps, shift 5, no guidance)."""

    prompt: Prompt = Field("", description="Not used: DreamDojo runs on the empty prompt's embedding.")
    negative_prompt: Prompt = Field("", description="Not used.")
    steps: int = Field(35, ge=1, le=1000, description="Denoising steps per chunk (UniPC flow solver).")
    num_frames: int = Field(
        49, ge=13, le=12 * 200 + 1, description="Frames of the rollout: 1 + 12k for k chunks of 12 actions, e.g. 49."
    )
    height: int = Field(480, ge=16, le=1920, description="Height in pixels; a multiple of 16 (the authors: 480).")
    width: int = Field(640, ge=16, le=1920, description="Width in pixels; a multiple of 16 (the authors: 640).")
    guidance: float = Field(
        0.0,
        ge=0.0,
        le=20.0,
        description="cond + g (cond - uncond); 0 (the authors' default) runs no unconditional pass at all.",
    )
    fps: int = Field(10, ge=1, le=240, description="Frames per second of the written video (GR-1: 10).")
    shift: float = Field(5.0, gt=0.0, le=100.0, description="Flow shift of the UniPC schedule (the authors: 5).")
    conditioning: Literal["authors", "diffusers"] = Field(
        "authors",
        description=(
            "How the conditioning frame is timed: 'authors' (every frame at the step's timestep) or "
            "'diffusers' (Cosmos2_5_PredictBasePipeline: the conditioning frame at 0.0001, the others at sigma)."
        ),
    )
    stitch: Literal["new", "authors"] = Field(
        "new",
        description=(
            "How chunks join into the rollout video: 'new' (each chunk's 12 new frames after the first chunk's 13) "
            "or 'authors' (a later chunk's first 12 frames: its re-made conditioning frame, not its last)."
        ),
    )
    dataset: str | None = Field(None, description="A LeRobot v2 dataset folder: image and actions from a sample.")
    sample: int = Field(0, ge=0, le=1_000_000, description="The evaluation window of the dataset to roll out.")
    samples_per_task: int = Field(
        10, ge=1, le=10_000, description="Evaluation windows per task, evenly spaced (the authors: 10)."
    )
    stats: str | None = Field(None, description="The action statistics JSON (default: the weights' or dataset's).")

    # These shape every chunk's trajectory: a fork or rewind continues with them.
    fixed_fields: ClassVar[frozenset[str]] = GenerationParams.fixed_fields | {"shift", "conditioning"}

    @field_validator("num_frames")
    @classmethod
    def _whole_chunks(cls, v: int) -> int:
        if (v - 1) % FRAMES_PER_CHUNK:
            lo = max(13, (v - 1) // FRAMES_PER_CHUNK * FRAMES_PER_CHUNK + 1)
            raise ValueError(f"must be 1 + 12k (whole chunks of 12 actions); nearest: {lo} or {lo + 12}")
        return v

    @field_validator("height", "width")
    @classmethod
    def _multiple_of_16(cls, v: int) -> int:
        return multiple_of(v, 16)

    @property
    def chunks(self) -> int:
        return chunks_of(self.num_frames)


@dataclass(frozen=True)
class Size:
    """A transformer size (diffusers' Cosmos-2.5 config names)."""

    heads: int
    head_dim: int
    layers: int


SIZES = {"2b": Size(16, 128, 28), "14b": Size(40, 128, 36)}
NET_FILE = "model_ema_bf16.pt"

INPUTS = (
    InputSpec(
        name="image",
        kind="image",
        description="the first camera frame, RGB in [0, 1], at the rollout's height and width",
        shape=(3, "height", "width"),
        minimum=0.0,
        maximum=1.0,
        required=False,  # from the dataset sample when one is configured
    ),
    InputSpec(
        name="actions",
        kind="actions",
        description=f"{ACTIONS_PER_CHUNK} rows of the unified {ACTION_DIM}-dim action vector per chunk",
        shape=("*", ACTION_DIM),
        per_chunk=ACTIONS_PER_CHUNK,
        required=False,
    ),
)

TINY_DEFAULTS = {"num_frames": 25, "height": 32, "width": 48, "steps": 4}


def _variants() -> tuple[VariantSpec, ...]:
    out = []
    for size in SIZES:
        for embodiment, (lo, hi) in EMBODIMENTS.items():
            post = "post-trained on " + EMBODIMENT_NAMES[embodiment]
            out.append(
                VariantSpec(
                    name=f"{size}-{embodiment}",
                    description=(
                        f"DreamDojo {size.upper()} {post} (actions in dims [{lo}, {hi})), from a local folder: "
                        f"{NET_FILE} or a DCP model/ folder, tokenizer.pth or vae/, the empty-prompt embedding "
                        "and the action statistics."
                    ),
                    weights_env="ARC_DREAMDOJO_WEIGHTS",
                    check_folder=check_folder,
                )
            )
    out.append(
        VariantSpec(
            name="tiny",
            description="The same classes at tiny sizes with random weights (GR-1 actions): output is noise.",
            tiny=True,
            param_defaults=TINY_DEFAULTS,
            stands_in_for=tuple(v.name for v in out),
        )
    )
    return tuple(out)


def check_folder(folder: Path) -> list[str]:
    """What a weights folder lacks (:func:`arc_dreamdojo.weights.check_folder`), checked
    when the model is resolved, before anything loads."""
    from arc_dreamdojo.weights import check_folder as check

    return check(folder)


def embodiment_of(variant: str) -> str:
    return variant.split("-", 1)[1] if "-" in variant else "gr1"


DREAMDOJO = ModelSpec(
    name="dreamdojo",
    description="DreamDojo: a robot's future camera video from its first frame and joint actions, chunk by chunk.",
    params=DreamDojoParams,
    latent_space=LatentSpace(family="wan-vae", channels=16, temporal_compression=4, spatial_compression=8),
    variants=_variants(),
    inputs=INPUTS,
    reference_metrics=("piq_psnr", "piq_ssim", "piq_lpips"),
)
