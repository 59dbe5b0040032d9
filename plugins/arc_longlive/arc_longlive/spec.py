"""What LongLive is to the framework: its variants, parameters and latent space.

LongLive (causal Wan 2.1 1.3B + LoRA) makes a video a block of 3 latent frames at a
time, each block in 4 steps, attending to a frame sink and a window of recent frames.
A session's steps are its blocks' steps: block ``b`` is pass ``b`` of 4 steps.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field, field_validator, model_validator

from arc_fabric_core.models import LatentSpace, ModelSpec, VariantSpec
from arc_fabric_core.params import GenerationParams

BLOCK_FRAMES = 3  # latent frames per block (what LongLive was trained with)
WAN_COMPONENTS = ("model_index.json", "scheduler", "text_encoder", "tokenizer", "transformer", "vae")
BASE_FILE = "longlive_base.pt"
LORA_FILE = "lora.pt"


def latent_frames(num_frames: int) -> int:
    return (num_frames - 1) // 4 + 1


class LongLiveParams(GenerationParams):
    """LongLive parameters; defaults from its inference config (120 latent frames: 477
    frames, about 30 s at 16 fps; 4 steps; no guidance)."""

    negative_prompt: str = Field("", description="Not used: LongLive runs without classifier-free guidance.")
    steps: int = Field(4, ge=1, le=4, description="Denoising steps per block (LongLive is distilled for 4).")
    num_frames: int = Field(
        477, ge=9, description="Frames in the output video: 12k-3 (k blocks of 3 latent frames), e.g. 9, 21, 477."
    )
    height: int = Field(480, ge=16, description="Height in pixels; a multiple of 16.")
    width: int = Field(832, ge=16, description="Width in pixels; a multiple of 16.")
    guidance: float = Field(1.0, ge=0.0, le=1.0, description="LongLive runs without guidance (1).")
    fps: int = Field(16, ge=1, le=240, description="Frames per second of the written video.")
    shift: float = Field(5.0, gt=0.0, description="Timestep shift of the denoising levels (LongLive: 5).")
    prompts: list[str] = Field(
        default_factory=list, description="Prompts after the first, each taking over at its switch frame."
    )
    switch_frames: list[int] = Field(
        default_factory=list,
        description="Latent frames where each of `prompts` takes over (a switch lands on the next block start).",
    )
    window_frames: int = Field(12, ge=-1, description="Latent frames a block attends to, itself included (-1: all).")
    sink_frames: int = Field(3, ge=0, description="First latent frames every block attends to (never evicted).")

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
        if v % 16:
            raise ValueError(f"must be a multiple of 16; nearest: {v - v % 16 or 16} or {v - v % 16 + 16}")
        return v

    @model_validator(mode="after")
    def _prompt_schedule(self) -> LongLiveParams:
        if len(self.switch_frames) != len(self.prompts):
            raise ValueError(
                f"switch_frames: one per entry of prompts ({len(self.prompts)}), got {len(self.switch_frames)}"
            )
        total = latent_frames(self.num_frames)
        last = 0
        for frame in self.switch_frames:
            if not last < frame < total:
                raise ValueError(f"switch_frames: increasing latent frames in 1..{total - 1}, got {self.switch_frames}")
            last = frame
        if self.window_frames != -1 and self.window_frames < BLOCK_FRAMES + self.sink_frames:
            raise ValueError(
                f"window_frames: at least a block and the sink ({BLOCK_FRAMES} + {self.sink_frames}), "
                f"or -1; got {self.window_frames}"
            )
        return self

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
        ),
    ),
)
