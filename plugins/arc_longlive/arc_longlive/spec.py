"""What LongLive is to the framework: its variants, parameters and latent space.

LongLive (causal Wan 2.1 1.3B + LoRA) makes a video a block of 3 latent frames at a
time, each block in 4 steps, attending to a frame sink and a window of recent frames.
A session's steps are its blocks' steps: block ``b`` is pass ``b`` of 4 steps.
"""

from __future__ import annotations

from typing import Annotated, ClassVar

from pydantic import Field, ValidationInfo, field_validator

from arc_fabric_core.contract.bounds import AtMost
from arc_fabric_core.contract.models import LatentSpace, ModelSpec, VariantSpec
from arc_fabric_core.contract.params import GenerationParams, Prompt, multiple_of
from arc_fabric_core.kit.tiny_wan import ROPE_POSITIONS as TINY_ROPE_POSITIONS

BLOCK_FRAMES = 3  # latent frames per block (what LongLive was trained with)
WAN_COMPONENTS = ("model_index.json", "scheduler", "text_encoder", "tokenizer", "transformer", "vae")
BASE_FILE = "longlive_base.pt"
LORA_FILE = "lora.pt"


# Wan's rotary table (the transformer's rope_max_seq_len) holds this many positions per
# axis: latent frames, and latent rows and columns of 16 pixels (8x VAE, 2x2 patches).
# A block placed past it fails inside the transformer; the tiny variant's table is shorter.
ROPE_POSITIONS = 1024


def latent_frames(num_frames: int) -> int:
    return (num_frames - 1) // 4 + 1


def most_frames(positions: int) -> int:
    """The most frames (whole blocks) a rotary table of ``positions`` latent frames places."""
    return (positions // BLOCK_FRAMES * BLOCK_FRAMES - 1) * 4 + 1


def _pixels(positions: int, which: str) -> AtMost:
    return AtMost(positions * 16, f"{which} rotary table holds {positions} positions of 16 pixels")


_FRAMES = AtMost(most_frames(ROPE_POSITIONS), f"Wan's rotary table holds {ROPE_POSITIONS} latent frames")
_PIXELS = _pixels(ROPE_POSITIONS, "Wan's")
_LATENT_FRAMES = AtMost(ROPE_POSITIONS, f"Wan's rotary table holds {ROPE_POSITIONS} latent frames")


class LongLiveParams(GenerationParams):
    """LongLive parameters; defaults from its inference config (120 latent frames: 477
    frames, about 30 s at 16 fps; 4 steps; no guidance)."""

    negative_prompt: Prompt = Field("", description="Not used: LongLive runs without classifier-free guidance.")
    steps: int = Field(4, ge=1, le=4, description="Denoising steps per block (LongLive is distilled for 4).")
    num_frames: Annotated[int, _FRAMES] = Field(
        477, ge=9, description="Frames in the output video: 12k-3 (k blocks of 3 latent frames), e.g. 9, 21, 477."
    )
    height: Annotated[int, _PIXELS] = Field(480, ge=16, description="Height in pixels; a multiple of 16.")
    width: Annotated[int, _PIXELS] = Field(832, ge=16, description="Width in pixels; a multiple of 16.")
    guidance: float = Field(1.0, ge=0.0, le=1.0, description="LongLive runs without guidance (1).")
    fps: int = Field(16, ge=1, le=240, description="Frames per second of the written video.")
    shift: float = Field(5.0, gt=0.0, description="Timestep shift of the denoising levels (LongLive: 5).")
    prompts: list[Prompt] = Field(
        default_factory=list, description="Prompts after the first, each taking over at its switch frame."
    )
    switch_frames: list[int] = Field(
        default_factory=list,
        description="Latent frames where each of `prompts` takes over (a switch lands on the next block start).",
        validate_default=True,  # prompts without switch frames must be refused
    )
    stream: bool = Field(
        True, description="Decode each block as soon as it is made: its frames stream out (events, previews)."
    )
    sink_frames: Annotated[int, _LATENT_FRAMES] = Field(
        3, ge=0, description="First latent frames every block attends to (never evicted)."
    )
    window_frames: Annotated[int, _LATENT_FRAMES] = Field(
        12, ge=-1, description="Latent frames a block attends to, itself included (-1: all)."
    )

    # These shape the trajectory of every block: a fork (a rewind) continues with them.
    fixed_fields: ClassVar[frozenset[str]] = GenerationParams.fixed_fields | {"shift", "window_frames", "sink_frames"}

    @field_validator("num_frames")
    @classmethod
    def _whole_blocks(cls, v: int) -> int:
        if v % 4 != 1 or latent_frames(v) % BLOCK_FRAMES:
            lo = max(9, ((latent_frames(v) // BLOCK_FRAMES) * BLOCK_FRAMES - 1) * 4 + 1)
            raise ValueError(
                f"must be 12k-3 (whole blocks of {BLOCK_FRAMES} latent frames); nearest: {lo} or {lo + 12}"
            )
        return v

    @field_validator("height", "width")
    @classmethod
    def _multiple_of_16(cls, v: int) -> int:
        return multiple_of(v, 16)

    @field_validator("switch_frames")
    @classmethod
    def _switches(cls, v: list[int], info: ValidationInfo) -> list[int]:
        prompts, frames = info.data.get("prompts"), info.data.get("num_frames")
        if prompts is not None and len(v) != len(prompts):
            raise ValueError(f"one per entry of prompts ({len(prompts)}), got {len(v)}")
        total = latent_frames(frames) if frames is not None else None
        last = 0
        for frame in v:
            if frame <= last or (total is not None and frame >= total):
                raise ValueError(f"increasing latent frames in 1..{total - 1 if total else '...'}, got {v}")
            last = frame
        return v

    @field_validator("window_frames")
    @classmethod
    def _window(cls, v: int, info: ValidationInfo) -> int:
        sink = info.data.get("sink_frames", 0)
        if v != -1 and v < BLOCK_FRAMES + sink:
            raise ValueError(f"at least a block and the sink ({BLOCK_FRAMES} + {sink}), or -1; got {v}")
        return v

    # ------------------------------------------------------------ derived

    @property
    def blocks(self) -> int:
        return latent_frames(self.num_frames) // BLOCK_FRAMES

    def all_prompts(self) -> list[str]:
        return [self.prompt, *self.prompts]

    def prompt_index(self, block: int) -> int:
        """Which prompt the block starting at latent frame ``block * 3`` runs under."""
        start = block * BLOCK_FRAMES
        return sum(1 for frame in self.switch_frames if block_start(frame) <= start)


def block_start(frame: int) -> int:
    """The start of the block a switch at latent ``frame`` lands on (rounded up)."""
    return -(-frame // BLOCK_FRAMES) * BLOCK_FRAMES


TINY_DEFAULTS = {"num_frames": 21, "height": 64, "width": 64}

LONGLIVE = ModelSpec(
    name="longlive",
    description="LongLive: frame-level autoregressive Wan 2.1 1.3B (KV cache, frame sink, prompt switches).",
    step_cache_refusal=(
        "its step also runs the clean passes that write earlier blocks into the KV cache, which a step cache "
        "would skip, and a block has only a few steps to save; run it without a cache"
    ),
    params=LongLiveParams,
    latent_space=LatentSpace(family="wan-vae", channels=16, temporal_compression=4, spatial_compression=8),
    variants=(
        VariantSpec(
            name="1.3b",
            description=(
                f"Wan2.1-T2V-1.3B-Diffusers from a local folder, with LongLive's {BASE_FILE} and {LORA_FILE} in it."
            ),
            weights_env="ARC_LONGLIVE_WEIGHTS",
            required_components=(*WAN_COMPONENTS, BASE_FILE, LORA_FILE),
        ),
        VariantSpec(
            name="tiny",
            description="The same classes at tiny sizes with random weights: output is noise; for trying every path.",
            tiny=True,
            param_defaults=TINY_DEFAULTS,
            stands_in_for=("1.3b",),
            # Its frames are checked against its table where its blocks are planned (arc_passes).
            param_bounds={
                "height": _pixels(TINY_ROPE_POSITIONS, "the tiny transformer's"),
                "width": _pixels(TINY_ROPE_POSITIONS, "the tiny transformer's"),
            },
        ),
    ),
)
