"""The DreamDojo plugin: a robot's future video, a chunk of 12 actions at a time.

The engine sees a session of ``chunks`` passes of ``steps`` steps. Chunk ``c`` denoises
its own 4 latent frames (``latents[:, :, 4c:4c+4]``) with a UniPC flow schedule of its
own, as the authors' ``generate_vid2world`` does for each chunk:

- its first latent frame is the conditioning frame: the clean latent of the first image
  (chunk 0) or of the last frame of the chunk before, decoded, quantised to 8 bits and
  encoded again (the authors' loop hands the next chunk a uint8 frame). Before every
  model call it replaces that frame of x_t; the model's output there is replaced by the
  exact velocity ``noise - x0`` (``noise``: the chunk's initial noise);
- the other frames get the chunk's actions through the action MLPs (:mod:`.network`);
- every frame runs at the step's timestep (the authors' convention), or, with
  ``conditioning=diffusers``, the conditioning frame at 0.0001 (diffusers' pipeline).

Initial noise: the authors draw each chunk's noise with numpy's ``RandomState(seed)``
(``standard_normal`` of the chunk's latent shape, float32) where ``seed`` is the index
of the chunk's first action (0, 12, 24, ...). Here the seed is that index plus
``1_000_003 x`` the session's seed, modulo 2^32: a session with seed 0 draws the
authors' noise exactly, and no chunk's noise depends on how many chunks there are (an
extension equals the longer rollout made at once).

The clean conditioning latents and decoded chunks are rebuildable model state
(``StepContext.state``): made again from the latents after a resume or in a fork, so a
resumed rollout equals an uninterrupted one bit for bit; a live session (``act``) keeps
them, so a new chunk costs only its own steps.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from arc_dreamdojo.spec import (
    ACTIONS_PER_CHUNK,
    DREAMDOJO,
    EMBODIMENTS,
    LATENT_FRAMES_PER_CHUNK,
    DreamDojoParams,
    embodiment_of,
)
from arc_fabric_core.contract.errors import InputError
from arc_fabric_core.contract.hookspecs import hookimpl
from arc_fabric_core.contract.models import ModelRef, ModelSpec
from arc_fabric_core.contract.schedule import DECODED_FRAMES, Schedule, StepContext
from arc_fabric_core.kit.guidance import batch_guidance, run_batched
from arc_fabric_core.kit.vae import normalize, unnormalize

COND_STATE = "dreamdojo.cond"  # chunk -> its clean conditioning latent [1, 16, 1, h, w]
DECODED_STATE = "dreamdojo.decoded"  # chunk -> its decoded frames, 8-bit levels in [0, 1]
CONDITIONING_TIMESTEP = 1e-4  # diffusers' pipeline's conditional_frame_timestep
TIMESTEP_SCALE = 0.001  # the net takes the scheduler's timestep (0..1000) scaled to 0..1

SCHEDULER_CONFIG: dict[str, Any] = dict(
    num_train_timesteps=1000,
    prediction_type="flow_prediction",
    use_flow_sigmas=True,
    solver_order=2,
    solver_type="bh2",
    predict_x0=True,
    lower_order_final=True,
    final_sigmas_type="zero",
    use_karras_sigmas=False,
)


@dataclass
class DreamDojoComponents:
    """A loaded DreamDojo: the denoiser, the Wan VAE, the empty prompt's embedding."""

    net: Any  # arc_dreamdojo.network.DreamDojoNet
    vae: Any  # diffusers.AutoencoderKLWan
    text: torch.Tensor  # [1, L, C], the transformer's dtype
    device: torch.device
    embodiment: str = "gr1"


@hookimpl
def arc_register_models(register: Callable[[ModelSpec], None]) -> None:
    register(DREAMDOJO)


@hookimpl
def arc_load(model: ModelRef, device: torch.device, dtype: str) -> DreamDojoComponents:
    from arc_fabric_core.kit.loading import component_dtypes
    from arc_fabric_core.kit.pipeline_folder import frozen

    dtypes = component_dtypes(device, dtype)
    net_dtype = dtypes if isinstance(dtypes, torch.dtype) else dtypes["default"]
    vae_dtype = dtypes if isinstance(dtypes, torch.dtype) else dtypes["vae"]
    if model.weights is None:
        from arc_dreamdojo.tiny import tiny_parts

        net, vae, text = tiny_parts()
    else:
        from arc_dreamdojo.loading import load_folder

        net, vae, text = load_folder(model)
    net = frozen(net.to(device=device, dtype=net_dtype))
    # diffusers warns on any dtype cast of the Wan VAE, even a cast to its own dtype.
    vae = frozen(vae.to(device) if vae.dtype == vae_dtype else vae.to(device=device, dtype=vae_dtype))
    return DreamDojoComponents(
        net=net,
        vae=vae,
        text=text.to(device=device, dtype=net_dtype),
        device=device,
        embodiment=embodiment_of(model.variant.name),
    )


@hookimpl
def arc_encode(components: DreamDojoComponents, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The first image's clean latent (the conditioning frame of chunk 0)."""
    return {"image_latent": encode_image(components, inputs["image"])}


def quantize(frames: torch.Tensor) -> torch.Tensor:
    """Frames in [0, 1] on the 8-bit levels the authors' loop passes on (truncation, as
    their ``(x * 255).to(torch.uint8)``)."""
    return (frames.clamp(0, 1) * 255).to(torch.uint8).to(torch.float32) / 255


def encode_image(components: DreamDojoComponents, image: torch.Tensor) -> torch.Tensor:
    """``image`` (3, H, W) in [0, 1] -> its normalised latent [1, 16, 1, H/8, W/8] (the
    mode of the posterior, as both the authors and diffusers' pipeline take it). The Wan
    VAE is causal: a first frame encodes alone exactly as at the head of a video."""
    vae = components.vae
    pixels = (quantize(image) * 2 - 1).view(1, 3, 1, *image.shape[1:]).to(vae.device, vae.dtype)
    latent = vae.encode(pixels).latent_dist.mode()
    return normalize(latent, vae).to(torch.float32)


def decode_chunk(components: DreamDojoComponents, chunk: torch.Tensor) -> torch.Tensor:
    """A chunk's 4 latent frames -> its 13 frames (F, H, W, 3), 8-bit levels in [0, 1]."""
    vae = components.vae
    video = vae.decode(unnormalize(chunk, vae), return_dict=False)[0]  # [1, 3, 13, H, W] in [-1, 1]
    frames = ((video[0].to(torch.float32) + 1) / 2).permute(1, 2, 3, 0)
    return quantize(frames).cpu()


def chunk_slice(chunk: int) -> slice:
    return slice(chunk * LATENT_FRAMES_PER_CHUNK, (chunk + 1) * LATENT_FRAMES_PER_CHUNK)


def chunk_noise(shape: tuple[int, ...], seed: int, chunk: int) -> torch.Tensor:
    """The initial noise of ``chunk`` (see the module docstring)."""
    rng = np.random.RandomState((seed * 1_000_003 + chunk * ACTIONS_PER_CHUNK) % 2**32)
    return torch.from_numpy(rng.standard_normal(shape).astype(np.float32))


def _chunk_shape(params: DreamDojoParams) -> tuple[int, ...]:
    return (1, 16, LATENT_FRAMES_PER_CHUNK, params.height // 8, params.width // 8)


@hookimpl
def arc_prepare_latents(components: DreamDojoComponents, params: DreamDojoParams) -> torch.Tensor:
    shape = _chunk_shape(params)
    noise = [chunk_noise(shape, params.seed, c) for c in range(params.chunks)]
    return torch.cat(noise, dim=2).to(components.device)


@hookimpl
def arc_passes(params: DreamDojoParams) -> list[int]:
    return [params.steps] * params.chunks


@hookimpl
def arc_next_pass(latents: torch.Tensor) -> torch.Tensor:
    return latents  # the next chunk's frames hold its initial noise already


@hookimpl
def arc_extend_params(params: DreamDojoParams, blocks: int) -> dict[str, Any]:
    return {"num_frames": params.num_frames + ACTIONS_PER_CHUNK * blocks}


@hookimpl
def arc_rewind_params(params: DreamDojoParams) -> dict[str, Any]:
    return {}  # no prompts: the chunks from the rewound one on are made again with their actions


def new_scheduler(shift: float, steps: int, device: torch.device | str = "cpu") -> Any:
    from diffusers import UniPCMultistepScheduler

    scheduler = UniPCMultistepScheduler(**SCHEDULER_CONFIG, flow_shift=shift)
    scheduler.set_timesteps(steps, device=device)
    return scheduler


@dataclass
class ChunkSchedule(Schedule):
    """One chunk's steps: the scheduler advances the chunk's 4 latent frames only."""

    chunk: int = 0

    def step(
        self, model_output: torch.Tensor, index: int, latents: torch.Tensor, generator: torch.Generator
    ) -> torch.Tensor:
        part = chunk_slice(self.chunk)
        x = latents[:, :, part]
        moved = self.scheduler.step(model_output.to(x.dtype), self.timesteps[index], x, return_dict=False)[0]
        out = latents.clone()
        out[:, :, part] = moved
        return out


@hookimpl
def arc_schedule(params: DreamDojoParams, pass_index: int) -> Schedule:
    scheduler = new_scheduler(params.shift, params.steps)
    return ChunkSchedule(
        timesteps=scheduler.timesteps, scheduler=scheduler, sigmas=scheduler.sigmas.float(), chunk=pass_index
    )


class _Parked(dict):
    """State that moves to CPU memory while its session waits (the conditioning latents
    are small; decoded chunks are already on the CPU)."""

    def park(self) -> None:
        for key, value in self.items():
            self[key] = value.cpu()


def condition_latent(
    components: DreamDojoComponents,
    state: dict[str, Any],
    latents: torch.Tensor,
    conditioning: dict[str, torch.Tensor],
    chunk: int,
) -> torch.Tensor:
    """The clean conditioning latent of ``chunk``: the image's for chunk 0; else the last
    frame of the chunk before (whose latents are final by now), as the authors make it."""
    conds = state.setdefault(COND_STATE, _Parked())
    if chunk not in conds:
        if chunk == 0:
            conds[0] = conditioning["image_latent"]
        else:
            frames = decoded(components, state, latents, chunk - 1)
            conds[chunk] = encode_image(components, frames[-1].permute(2, 0, 1))
    return conds[chunk].to(latents.device)


def decoded(components: DreamDojoComponents, state: dict[str, Any], latents: torch.Tensor, chunk: int) -> torch.Tensor:
    """The frames of a finished ``chunk``, decoded once per session run."""
    frames = state.setdefault(DECODED_STATE, _Parked())
    if chunk not in frames:
        frames[chunk] = decode_chunk(components, latents[:, :, chunk_slice(chunk)])
    return frames[chunk]


@hookimpl
def arc_denoise_step(
    components: DreamDojoComponents,
    latents: torch.Tensor,
    step: StepContext,
    conditioning: dict[str, torch.Tensor],
    params: DreamDojoParams,
    inputs: dict[str, torch.Tensor],
) -> torch.Tensor:
    chunk = step.pass_index
    if chunk > 0 and step.index == 0:
        # The chunk before has just finished: its frames stream out with this step.
        step.state[DECODED_FRAMES] = decoded(components, step.state, latents, chunk - 1)
    cond = condition_latent(components, step.state, latents, conditioning, chunk)
    x = latents[:, :, chunk_slice(chunk)]
    noise = chunk_noise(tuple(x.shape), params.seed, chunk).to(x.device)
    return velocity(components, x, cond, noise, step, params, inputs.get("actions"))


def velocity(
    components: DreamDojoComponents,
    x: torch.Tensor,
    cond: torch.Tensor,
    noise: torch.Tensor,
    step: StepContext,
    params: DreamDojoParams,
    actions: torch.Tensor | None,
) -> torch.Tensor:
    """The chunk's velocity at ``step``, guidance included, with the conditioning frame's
    replaced by the exact ``noise - x0``."""
    net = components.net
    dtype = net.dtype
    b, _, frames, h, w = x.shape
    mask = torch.zeros(b, 1, frames, h, w, device=x.device, dtype=torch.float32)
    mask[:, :, 0] = 1
    cond_full = torch.zeros_like(x)
    cond_full[:, :, :1] = cond
    model_in = (mask * cond_full + (1 - mask) * x).to(dtype)
    timestep = _timesteps(step, params, frames, x.device)
    padding = torch.zeros(1, 1, h * 8, w * 8, device=x.device, dtype=dtype)
    acts = actions.view(1, *actions.shape).to(x.device) if actions is not None else None

    def exact_frame(out: torch.Tensor) -> torch.Tensor:
        return (noise - cond_full) * mask + out.to(torch.float32) * (1 - mask)

    def call(text: torch.Tensor) -> torch.Tensor:
        return exact_frame(net(model_in, timestep.to(dtype), text, mask.to(dtype), padding, acts))

    if params.guidance == 0:
        return call(components.text)  # cond + 0 * (cond - uncond): the unconditional pass changes nothing
    # The unconditional pass: the text embedding dropped to zeros, as the conditioner drops it.
    uncond_text = torch.zeros_like(components.text)
    if batch_guidance(params.batch_guidance, x.device):
        # Per sample: latents, timesteps, text, condition mask, actions; the padding mask
        # stays [1, ...] (diffusers' Cosmos repeats it over the batch itself).
        branches = [
            {"latents": model_in, "timestep": timestep.to(dtype), "text": text, "condition_mask": mask.to(dtype)}
            | ({"actions": acts} if acts is not None else {})
            for text in (components.text, uncond_text)
        ]
        both = run_batched(lambda **kw: net(padding_mask=padding, **kw), branches)
        if both is not None:
            cond_v, uncond_v = (exact_frame(out) for out in both)
            return cond_v + params.guidance * (cond_v - uncond_v)
    cond_v = call(components.text)
    uncond_v = call(uncond_text)
    return cond_v + params.guidance * (cond_v - uncond_v)


def _timesteps(step: StepContext, params: DreamDojoParams, frames: int, device: torch.device) -> torch.Tensor:
    """[1, 1, T, 1, 1]: the step's time for every frame (the authors: the scheduler's
    integer timestep x 0.001), or diffusers' pipeline's (its sigma; 0.0001 on the
    conditioning frame)."""
    if params.conditioning == "authors":
        value = float(step.timestep) * TIMESTEP_SCALE
        return torch.full((1, 1, frames, 1, 1), value, device=device)
    assert step.sigma is not None
    out = torch.full((1, 1, frames, 1, 1), float(step.sigma), device=device)
    out[:, :, 0] = CONDITIONING_TIMESTEP
    return out


@hookimpl
def arc_decode(components: DreamDojoComponents, latents: torch.Tensor, params: DreamDojoParams) -> torch.Tensor:
    """The rollout video: chunk 0's 13 frames, then each later chunk's 12 (its new ones,
    or with ``stitch=authors`` its first 12, as the authors' evaluation joins them)."""
    chunks = latents.shape[2] // LATENT_FRAMES_PER_CHUNK
    parts = []
    for c in range(chunks):
        frames = decode_chunk(components, latents[:, :, chunk_slice(c)])
        if c == 0:
            parts.append(frames)
        else:
            parts.append(frames[1:] if params.stitch == "new" else frames[:ACTIONS_PER_CHUNK])
    return torch.cat(parts)


@hookimpl
def arc_source_inputs(model: ModelRef, params: DreamDojoParams, inputs: dict[str, Any]) -> Any:
    from arc_dreamdojo.sources import source_inputs

    return source_inputs(model, params, inputs)


def check_embodiment(actions: torch.Tensor, embodiment: str, field: str = "inputs.actions") -> None:
    """Actions with values outside ``embodiment``'s dims were made for another robot."""
    lo, hi = EMBODIMENTS[embodiment]
    outside = actions.clone()
    outside[:, lo:hi] = 0
    # The latent-action dims [352, 384) are zeros for robot data; any other embodiment's are foreign.
    used = (outside.abs() > 0).any(dim=0).nonzero().flatten().tolist()
    if used:
        others = [name for name, (a, b) in EMBODIMENTS.items() if name != embodiment and a <= used[0] < b]
        whose = f" ({others[0]}'s dims)" if others else ""
        raise InputError(
            field,
            f"has values in dim {used[0]}{whose}; {embodiment} actions lie in dims [{lo}, {hi}) of the 384, "
            "the rest zero",
        )


@hookimpl
def arc_register_operations(register: Callable[[Any], None]) -> None:
    from arc_dreamdojo.act import Act

    register(Act())


@hookimpl
def arc_register_ui(register: Callable[[Any], None]) -> None:
    from arc_dreamdojo.ui import extension

    register(extension())


@hookimpl
def arc_config_searchpath() -> list[str]:
    return ["pkg://arc_dreamdojo"]


@hookimpl
def arc_register_metrics(register: Callable[[Any], None]) -> None:
    from arc_dreamdojo.scores import METRICS

    for metric in METRICS:
        register(metric)
