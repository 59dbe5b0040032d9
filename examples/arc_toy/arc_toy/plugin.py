"""A complete model plugin in one file.

The "model" is a closed-form denoiser: it knows the clean video it aims for (colour
bands that drift over time, tinted by the prompt), so its flow prediction is exact
and the video converges to a real picture in a few steps (keeping a little of the
seed's noise as grain, so that seeds still differ). No weights are needed,
which makes it the quickest way to see every hook at work.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Annotated

import torch
from pydantic import Field, field_validator

from arc_fabric_core.contract.bounds import AtMost
from arc_fabric_core.contract.hookspecs import hookimpl
from arc_fabric_core.contract.models import LatentSpace, ModelRef, ModelSpec, VariantSpec
from arc_fabric_core.contract.params import GenerationParams, Steps
from arc_fabric_core.contract.schedule import Schedule, StepContext

# The toy holds its whole video as float32 tensors (the target, the latents, the
# prediction): 256 frames of 1024x1024 are 3 GiB each, more than a toy should ask for.
_FRAMES = AtMost(256, "the toy holds every frame at once")
_PIXELS = AtMost(1024, "the toy holds every pixel of every frame at once")


class ToyParams(GenerationParams):
    steps: Steps = Field(8, ge=1)
    num_frames: Annotated[int, _FRAMES] = Field(16, ge=1)
    height: Annotated[int, _PIXELS] = Field(64, ge=8)
    width: Annotated[int, _PIXELS] = Field(64, ge=8)
    guidance: float = Field(1.0, ge=0.0)
    fps: int = Field(8, ge=1, le=240)
    speed: float = Field(0.05, description="How far the bands drift per frame.")
    grain: float = Field(0.1, ge=0.0, le=1.0, description="Share of the noise left in as film grain.")

    @field_validator("height", "width")
    @classmethod
    def _even(cls, v: int) -> int:
        if v % 8:
            raise ValueError("must be a multiple of 8")
        return v


TOY = ModelSpec(
    name="toy",
    description="Closed-form denoiser drawing drifting colour bands; no weights.",
    params=ToyParams,
    latent_space=LatentSpace(family="rgb", channels=3, temporal_compression=1, spatial_compression=1),
    variants=(VariantSpec(name="default", description="Closed form: needs no weights."),),
    needs_weights=False,
)


def _target(params: ToyParams, device: torch.device) -> torch.Tensor:
    """The clean video in [-1, 1], layout (1, 3, F, H, W)."""
    # The prompt picks the palette; each channel is a phase-shifted wave, so bands are colourful.
    digest = hashlib.sha256(params.prompt.encode()).digest()
    phase = torch.tensor([b / 255.0 * 6.28 for b in digest[:3]], device=device).view(3, 1, 1, 1)
    f = torch.arange(params.num_frames, device=device).view(1, -1, 1, 1) * params.speed
    y = torch.linspace(0, 1, params.height, device=device).view(1, 1, -1, 1)
    x = torch.linspace(0, 1, params.width, device=device).view(1, 1, 1, -1)
    bands = 0.5 + 0.5 * torch.sin(6.28 * (x + 0.5 * y + f) + phase)
    return (0.15 + 0.8 * bands).mul(2).sub(1).unsqueeze(0)


@hookimpl
def arc_register_models(register: Callable[[ModelSpec], None]) -> None:
    register(TOY)


@hookimpl
def arc_load(model: ModelRef, device: torch.device) -> dict[str, torch.device]:
    return {"device": device}


@hookimpl
def arc_encode(components: dict, params: ToyParams) -> dict[str, torch.Tensor]:
    return {"target": _target(params, components["device"])}


@hookimpl
def arc_schedule(components: dict, params: ToyParams) -> Schedule:
    from diffusers import FlowMatchEulerDiscreteScheduler

    scheduler = FlowMatchEulerDiscreteScheduler(shift=1.0)
    scheduler.set_timesteps(params.steps, device=components["device"])
    scheduler.set_begin_index(0)
    return Schedule(timesteps=scheduler.timesteps, scheduler=scheduler, sigmas=scheduler.sigmas)


@hookimpl
def arc_prepare_latents(components: dict, params: ToyParams, generator: torch.Generator) -> torch.Tensor:
    shape = (1, 3, params.num_frames, params.height, params.width)
    return torch.randn(shape, generator=generator, dtype=torch.float32).to(components["device"])


@hookimpl
def arc_denoise_step(
    latents: torch.Tensor, step: StepContext, conditioning: dict[str, torch.Tensor], params: ToyParams
) -> torch.Tensor:
    # Flow matching: x_t = (1 - s) x0 + s noise, velocity = noise - x0 = (x_t - x0) / s.
    sigma = max(step.sigma or 1.0, 1e-4)
    return (1 - params.grain) * (latents - conditioning["target"]) / sigma


@hookimpl
def arc_decode(latents: torch.Tensor) -> torch.Tensor:
    return ((latents[0].permute(1, 2, 3, 0) + 1) / 2).clamp(0, 1)
