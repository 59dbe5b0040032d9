"""The LTX-Video plugin: every stage on diffusers' own LTX components.

Our stages do what ``LTXConditionPipeline`` does for text-to-video (no conditioning
images), split at the engine's seams, so that a session equals the pipeline bit for
bit; multi-scale adds what ``LTXLatentUpsamplePipeline`` does between two passes.
Latents live in the engine unpacked, (B, C, F, H, W) float32; the transformer and
the scheduler see them packed into tokens, as in the pipeline.

Heavy imports (diffusers, transformers) happen inside the hooks, so that listing
plugins or checking input stays fast.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from arc_fabric_core.contract.errors import SessionError, WeightsError
from arc_fabric_core.contract.hookspecs import hookimpl
from arc_fabric_core.contract.models import ModelRef, ModelSpec
from arc_fabric_core.contract.schedule import Schedule, StepContext
from arc_fabric_core.kit.activations import latent_tokens, transformer_call_bytes
from arc_fabric_core.kit.guidance import batch_guidance, guided, run_batched
from arc_fabric_core.kit.loading import component_dtypes, quiet_loading
from arc_fabric_core.kit.pipeline_folder import PipelineComponents, frozen, load_pipeline
from arc_fabric_core.kit.vae import video_frames
from arc_ltx.spec import LTX, TINY_LARGE, UPSAMPLER_ENV, UPSAMPLER_SUBFOLDER, LTXParams


@dataclass
class LTXComponents(PipelineComponents):
    """A loaded LTX model: ``pipe`` is a ``diffusers.LTXConditionPipeline``;
    ``upsample_pipe`` holds the latent upsampler of multi-scale runs (None when no
    upsampler folder is known)."""

    # diffusers.LTXLatentUpsamplePipeline over the upsampler and ``pipe``'s VAE.
    upsample_pipe: Any = None
    # Video coordinates per (latent shape, fps, batch): the same for every step of a pass.
    _coords: dict[tuple[int, ...], torch.Tensor] = field(default_factory=dict, repr=False)

    def video_coords(self, frames: int, height: int, width: int, fps: int, batch: int) -> torch.Tensor:
        """The transformer's RoPE coordinates, made as ``LTXConditionPipeline`` makes them
        (latent cell -> pixel position, time in seconds)."""
        key = (frames, height, width, fps, batch)
        if key not in self._coords:
            pipe = self.pipe
            ids = pipe._prepare_video_ids(
                1,
                frames,
                height,
                width,
                patch_size_t=pipe.transformer_temporal_patch_size,
                patch_size=pipe.transformer_spatial_patch_size,
                device=self.device,
            )
            ids = pipe._scale_video_ids(
                ids,
                scale_factor=pipe.vae_spatial_compression_ratio,
                scale_factor_t=pipe.vae_temporal_compression_ratio,
                frame_index=0,
                device=self.device,
            )
            coords = ids.float()
            coords[:, 0] = coords[:, 0] * (1.0 / fps)
            self._coords[key] = torch.cat([coords] * batch, dim=0) if batch > 1 else coords
        return self._coords[key]


def _pack(latents: torch.Tensor, pipe: Any) -> torch.Tensor:
    return pipe._pack_latents(latents, pipe.transformer_spatial_patch_size, pipe.transformer_temporal_patch_size)


def _unpack(tokens: torch.Tensor, shape: tuple[int, ...], pipe: Any) -> torch.Tensor:
    """Tokens back to (B, C, F, H, W) latents whose last three sizes are ``shape[-3:]``."""
    frames, height, width = shape[-3:]
    p, pt = pipe.transformer_spatial_patch_size, pipe.transformer_temporal_patch_size
    return pipe._unpack_latents(tokens, frames // pt, height // p, width // p, p, pt)


@dataclass
class LTXSchedule(Schedule):
    """LTX's scheduler step: ``LTXConditionPipeline`` steps with the negated model output
    and per-token timesteps (the noise level comes from the timestep itself, the next
    one from the sigma table), on packed latents, without casting the result back to the
    model's dtype. Same numbers, other arithmetic than the plain step, so it is ours."""

    pipe: Any = field(default=None, repr=False)

    def step(
        self, model_output: torch.Tensor, index: int, latents: torch.Tensor, generator: torch.Generator
    ) -> torch.Tensor:
        t = self.timesteps[index]
        timestep = t.expand(latents.shape[0]).unsqueeze(-1).float()
        tokens = self.scheduler.step(
            -_pack(model_output, self.pipe),
            t,
            _pack(latents, self.pipe),
            per_token_timesteps=timestep,
            return_dict=False,
        )[0]
        return _unpack(tokens, latents.shape, self.pipe)


@contextmanager
def _quiet_custom_timesteps(scheduler: Any) -> Iterator[None]:
    """diffusers warns on every custom-timestep schedule that its sigmas may not match the
    timesteps; with an unshifted scheduler they do (sigma = t / 1000), so the warning is
    only noise there. A shifting scheduler keeps it: there the warning is true."""
    config = scheduler.config
    exact = config.get("shift", 1.0) == 1.0 and not config.get("shift_terminal") and not config.use_dynamic_shifting
    logger = logging.getLogger(type(scheduler).__module__)
    level = logger.level
    if exact:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def upsampler_folder(model: ModelRef) -> Path | None:
    """Where the latent upsampler of a real variant lives: ``$ARC_LTX_UPSAMPLER_WEIGHTS``,
    else a ``latent_upsampler/`` folder inside the weights folder; None if neither exists."""
    configured = os.environ.get(UPSAMPLER_ENV)
    if configured:
        return Path(configured).expanduser()
    if model.weights is not None and (model.weights / UPSAMPLER_SUBFOLDER).is_dir():
        return model.weights / UPSAMPLER_SUBFOLDER
    return None


def _upsampler_config_folder(folder: Path) -> tuple[Path, str | None] | None:
    """(folder, subfolder) to load the upsampler model from: a model folder
    (``config.json``) or an ``LTXLatentUpsamplePipeline`` folder (``latent_upsampler/``)."""
    if (folder / "config.json").is_file():
        return folder, None
    if (folder / UPSAMPLER_SUBFOLDER / "config.json").is_file():
        return folder, UPSAMPLER_SUBFOLDER
    return None


def check_upsampler(model: ModelRef) -> None:
    """Refuse a multi-scale run of a real variant without a loadable upsampler (before any load)."""
    if model.variant.tiny:
        return
    folder = upsampler_folder(model)
    where = (
        f"set {UPSAMPLER_ENV} to a latent upsampler folder (an LTXLatentUpsamplerModel folder with config.json, "
        f"or an LTXLatentUpsamplePipeline folder) or put one in {model.weights}/{UPSAMPLER_SUBFOLDER}/"
    )
    if folder is None:
        raise WeightsError("model.weights", f"multiscale=true needs the latent upsampler of {model.label}: {where}")
    if _upsampler_config_folder(folder) is None:
        raise WeightsError("model.weights", f"{folder} holds no latent upsampler (no config.json): {where}")


def _load_upsampler(folder: Path, device: torch.device, dtype: torch.dtype) -> Any:
    from diffusers.pipelines.ltx.modeling_latent_upsampler import LTXLatentUpsamplerModel

    located = _upsampler_config_folder(folder)
    if located is None:
        raise WeightsError("model.weights", f"{folder} holds no latent upsampler (no config.json)")
    root, subfolder = located
    model = LTXLatentUpsamplerModel.from_pretrained(str(root), subfolder=subfolder, dtype=dtype)
    return frozen(model.to(device))


@hookimpl
def arc_register_models(register: Callable[[ModelSpec], None]) -> None:
    register(LTX)


@hookimpl
def arc_load(model: ModelRef, device: torch.device, dtype: str) -> LTXComponents | None:
    from diffusers import LTXConditionPipeline, LTXLatentUpsamplePipeline

    from arc_ltx.tiny import ensure_tiny_checkpoint, ensure_tiny_upsampler

    large = model.variant.name == TINY_LARGE
    pipe = load_pipeline(
        LTXConditionPipeline, model, device, dtype, tiny_folder=lambda: ensure_tiny_checkpoint(large=large)
    )
    # The upsampler works on the VAE's latents: it takes the VAE's dtype.
    dtypes = component_dtypes(device, dtype)
    upsampler_dtype = dtypes.get("vae", torch.float32) if isinstance(dtypes, dict) else dtypes
    upsampler = None
    if model.weights is None:
        with quiet_loading():  # the tiny upsampler loads through the very same call
            upsampler = _load_upsampler(ensure_tiny_upsampler(), device, upsampler_dtype)
    else:
        folder = upsampler_folder(model)
        if folder is not None and _upsampler_config_folder(folder) is not None:
            upsampler = _load_upsampler(folder, device, upsampler_dtype)
    upsample_pipe = None
    if upsampler is not None:
        upsample_pipe = LTXLatentUpsamplePipeline(vae=pipe.vae, latent_upsampler=upsampler)
        upsample_pipe.set_progress_bar_config(disable=True)
    return LTXComponents(pipe=pipe, device=device, upsample_pipe=upsample_pipe)


@hookimpl
def arc_encode(components: LTXComponents, params: LTXParams) -> dict[str, torch.Tensor]:
    cfg = params.guidance > 1.0
    prompt_embeds, prompt_mask, negative_embeds, negative_mask = components.pipe.encode_prompt(
        prompt=params.prompt,
        negative_prompt=params.negative_prompt,
        do_classifier_free_guidance=cfg,
        num_videos_per_prompt=1,
        max_sequence_length=params.max_sequence_length,
        device=components.device,
    )
    out = {"prompt_embeds": prompt_embeds, "prompt_attention_mask": prompt_mask}
    if cfg:
        out |= {"negative_prompt_embeds": negative_embeds, "negative_prompt_attention_mask": negative_mask}
    return out


@hookimpl
def arc_passes(model: ModelRef, params: LTXParams) -> list[int] | None:
    if not params.multiscale:
        return None
    check_upsampler(model)
    return params.passes()


@hookimpl
def arc_schedule(components: LTXComponents, params: LTXParams, pass_index: int = 0) -> LTXSchedule:
    from diffusers.pipelines.ltx.pipeline_ltx_condition import linear_quadratic_schedule, retrieve_timesteps

    base = components.pipe.scheduler
    # A fresh scheduler per session: the shared model's scheduler is never touched.
    scheduler = type(base).from_config(base.config)
    if scheduler.config.use_dynamic_shifting:
        raise SessionError(
            "the checkpoint's scheduler shifts its sigmas by resolution (use_dynamic_shifting), which LTX's "
            "custom-timestep pipeline does not support; use a checkpoint saved for LTXConditionPipeline"
        )
    timesteps: Any = params.pass_timesteps(pass_index)
    if timesteps is None:
        # LTXConditionPipeline's schedule when given a number of steps only.
        timesteps = linear_quadratic_schedule(params.steps) * 1000
    with _quiet_custom_timesteps(scheduler):
        retrieve_timesteps(scheduler, None, components.device, timesteps)
    return LTXSchedule(
        timesteps=scheduler.timesteps, scheduler=scheduler, sigmas=scheduler.sigmas, pipe=components.pipe
    )


@hookimpl
def arc_prepare_latents(components: LTXComponents, params: LTXParams, generator: torch.Generator) -> torch.Tensor:
    pipe = components.pipe
    height, width = params.pass_size(0)
    tokens, _, _, _ = pipe.prepare_latents(
        [],
        1.0,
        0,
        batch_size=1,
        num_channels_latents=pipe.transformer.config.in_channels,
        height=height,
        width=width,
        num_frames=params.num_frames,
        generator=generator,
        device=components.device,
        dtype=torch.float32,
    )
    r_t, r_s = pipe.vae_temporal_compression_ratio, pipe.vae_spatial_compression_ratio
    return _unpack(tokens, ((params.num_frames - 1) // r_t + 1, height // r_s, width // r_s), pipe)


@hookimpl
def arc_denoise_step(
    components: LTXComponents,
    latents: torch.Tensor,
    step: StepContext,
    conditioning: dict[str, torch.Tensor],
    params: LTXParams,
) -> torch.Tensor:
    pipe, transformer = components.pipe, components.transformer
    cfg = params.guidance > 1.0 and "negative_prompt_embeds" in conditioning
    packed = _pack(latents, pipe)
    frames, height, width = latents.shape[-3:]
    cache = {"step_index": step.index, "sigma": step.sigma, "num_inference_steps": step.total}

    def branch(embeds_key: str, mask_key: str) -> dict[str, torch.Tensor]:
        embeds = conditioning[embeds_key]
        tokens = packed.to(embeds.dtype)
        return {
            "hidden_states": tokens,
            "encoder_hidden_states": embeds,
            "timestep": step.timestep.expand(tokens.shape[0]).unsqueeze(-1).float(),
            "encoder_attention_mask": conditioning[mask_key],
            "video_coords": components.video_coords(frames, height, width, params.fps, tokens.shape[0]),
        }

    def call(**inputs: torch.Tensor) -> torch.Tensor:
        return transformer(**inputs, return_dict=False)[0]

    text_branch = branch("prompt_embeds", "prompt_attention_mask")
    if not cfg:
        with transformer.cache_context("cond_uncond", **cache):
            noise_pred = call(**text_branch)
        return _unpack(noise_pred, latents.shape, pipe)
    uncond_branch = branch("negative_prompt_embeds", "negative_prompt_attention_mask")
    both = None
    if batch_guidance(params.batch_guidance, packed.device, pipeline_batches=True):
        # One batched call, unconditional first, as the pipeline makes it; prompts of
        # different lengths are padded, their masks hiding the padding.
        with transformer.cache_context("cond_uncond", **cache):
            both = run_batched(
                call, [uncond_branch, text_branch], masks={"encoder_hidden_states": "encoder_attention_mask"}
            )
    if both is not None:
        uncond, text = both
    else:
        with transformer.cache_context("cond", **cache):
            text = call(**text_branch)
        with transformer.cache_context("uncond", **cache):
            uncond = call(**uncond_branch)
    noise_pred = guided(text, uncond, params.guidance, rescale=params.guidance_rescale)
    # The engine's convention: the velocity (noise - x0) in the latents' layout.
    return _unpack(noise_pred, latents.shape, pipe)


@hookimpl
def arc_next_pass(
    components: LTXComponents,
    latents: torch.Tensor,
    pass_index: int,
    schedule: Schedule,
    params: LTXParams,
    generator: torch.Generator,
) -> torch.Tensor:
    """Multi-scale: upsample the first pass's clean latents 2x with ``LTXLatentUpsamplePipeline``
    (AdaIN to the first pass's statistics, optional tone map), then re-noise them to the
    first noise level of ``schedule`` as ``LTXConditionPipeline`` does with given latents."""
    from diffusers.utils.torch_utils import randn_tensor

    if pass_index != 1:
        raise SessionError(f"LTX multi-scale has two passes; there is no pass {pass_index}")
    if components.upsample_pipe is None:
        raise WeightsError("model.weights", f"multiscale=true needs a latent upsampler; set {UPSAMPLER_ENV}")
    device = components.device
    upsampled = components.upsample_pipe(
        latents=latents.to(device=device, dtype=torch.float32),
        adain_factor=params.adain_factor,
        tone_map_compression_ratio=params.tone_map_compression_ratio,
        output_type="latent",
        return_dict=False,
    )[0]
    # LTXConditionPipeline.prepare_latents given latents and a start sigma: fresh noise mixed in.
    noise = randn_tensor(upsampled.shape, generator=generator, device=device, dtype=torch.float32)
    assert schedule.sigmas is not None
    sigma = schedule.sigmas[:1].repeat(upsampled.shape[0]).to(device=device, dtype=torch.float32)
    return sigma * noise + (1 - sigma) * upsampled.to(device=device, dtype=torch.float32)


@hookimpl
def arc_decode(components: LTXComponents, latents: torch.Tensor, params: LTXParams) -> torch.Tensor:
    from diffusers.utils.torch_utils import randn_tensor

    pipe = components.pipe
    vae = pipe.vae
    z = pipe._denormalize_latents(
        latents.to(components.device, torch.float32), vae.latents_mean, vae.latents_std, vae.config.scaling_factor
    ).to(vae.dtype)
    timestep = None
    if vae.config.timestep_conditioning:
        # The decoder also denoises a last bit: noise at decode_timestep, drawn from the seed
        # (not the session's generator), so that a video decodes the same every time.
        generator = torch.Generator("cpu").manual_seed(params.seed)
        noise = randn_tensor(z.shape, generator=generator, device=z.device, dtype=z.dtype)
        scale = params.decode_timestep if params.decode_noise_scale is None else params.decode_noise_scale
        timestep = torch.tensor([params.decode_timestep], device=z.device, dtype=z.dtype)
        scale_t = torch.tensor([scale], device=z.device, dtype=z.dtype)[:, None, None, None, None]
        z = (1 - scale_t) * z + scale_t * noise
    video = vae.decode(z, timestep, return_dict=False)[0]
    # Multi-scale decodes at twice the first pass's size; the video is asked for at height x width.
    return video_frames(pipe.video_processor, video, size=(params.height, params.width))


def plugins_with_ltx() -> Any:
    """The installed plugins, or this plugin registered by hand where it is only on the
    path (a bare GPU image without entry points)."""
    import sys

    from arc_fabric_core.dispatch.plugins import plugins_with

    return plugins_with(sys.modules[__name__], "ltx")


# Transformer width and feed-forward width of each published size.
_WIDTHS = {"2b": (2048, 8192), "13b": (4096, 16384)}


@hookimpl
def arc_activation_bytes(model: ModelRef, params: LTXParams) -> int:
    """Peak memory beside the weights: the larger of one transformer call (bf16, the
    batch of CFG's two halves unless ``batch_guidance=off``; feed-forward hidden layer and q/k/v/o over every token)
    and the VAE decode (bf16 features of every frame at full resolution, 64 channels in
    the last up block, input and output alive)."""
    size = "13b" if "13b" in model.variant.name else "2b"
    dim, ffn = _WIDTHS[size]
    tokens = latent_tokens(params.num_frames, params.height, params.width, frames_per_token=8, pixels_per_token=32)
    batch = 2 if params.guidance > 1.0 and params.batch_guidance != "off" else 1
    transformer = transformer_call_bytes(tokens, dim, ffn, item_bytes=2, batch=batch)
    vae = params.num_frames * params.height * params.width * 64 * 2 * 2
    return max(transformer, vae)
