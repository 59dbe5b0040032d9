"""The Wan 2.1 plugin: every stage on diffusers' own Wan components.

Heavy imports (diffusers, transformers) happen inside the hooks, so that listing
plugins or checking input stays fast.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from arc_fabric_core.contract.hookspecs import hookimpl
from arc_fabric_core.contract.models import ModelRef, ModelSpec
from arc_fabric_core.contract.schedule import Schedule, StepContext
from arc_fabric_core.kit.activations import latent_tokens, transformer_call_bytes, wan_vae_decode_bytes
from arc_fabric_core.kit.guidance import batch_guidance, guided, run_batched
from arc_fabric_core.kit.pipeline_folder import PipelineComponents, load_pipeline
from arc_fabric_core.kit.vae import decode_frames
from arc_wan21.spec import TINY_LARGE, WAN21, WanParams


@dataclass
class WanComponents(PipelineComponents):
    """A loaded Wan model: ``pipe`` is a ``diffusers.WanPipeline``."""


@hookimpl
def arc_register_models(register: Callable[[ModelSpec], None]) -> None:
    register(WAN21)


@hookimpl
def arc_load(model: ModelRef, device: torch.device, dtype: str) -> WanComponents | None:
    from diffusers import WanPipeline

    from arc_wan21.tiny import ensure_tiny_checkpoint

    large = model.variant.name == TINY_LARGE
    pipe = load_pipeline(WanPipeline, model, device, dtype, tiny_folder=lambda: ensure_tiny_checkpoint(large=large))
    return WanComponents(pipe=pipe, device=device)


@hookimpl
def arc_encode(components: WanComponents, params: WanParams) -> dict[str, torch.Tensor]:
    pipe = components.pipe
    cfg = params.guidance > 1.0
    prompt_embeds, negative = pipe.encode_prompt(
        prompt=params.prompt,
        negative_prompt=params.negative_prompt,
        do_classifier_free_guidance=cfg,
        num_videos_per_prompt=1,
        max_sequence_length=params.max_sequence_length,
        device=components.device,
    )
    dtype = pipe.transformer.dtype
    out = {"prompt_embeds": prompt_embeds.to(dtype)}
    if cfg:
        out["negative_prompt_embeds"] = negative.to(dtype)
    return out


@hookimpl
def arc_schedule(components: WanComponents, params: WanParams) -> Schedule:
    base = components.pipe.scheduler
    # A fresh scheduler per session: its internals are session state, and the
    # shared model's config must never change for one session.
    shift_key = "flow_shift" if "flow_shift" in base.config else "shift"
    scheduler = type(base).from_config(base.config, **{shift_key: params.shift})
    scheduler.set_timesteps(params.steps, device=components.device)
    scheduler.set_begin_index(0)
    sigmas = getattr(scheduler, "sigmas", None)
    return Schedule(timesteps=scheduler.timesteps, scheduler=scheduler, sigmas=sigmas)


@hookimpl
def arc_prepare_latents(components: WanComponents, params: WanParams, generator: torch.Generator) -> torch.Tensor:
    pipe = components.pipe
    return pipe.prepare_latents(
        1,
        pipe.transformer.config.in_channels,
        params.height,
        params.width,
        params.num_frames,
        torch.float32,
        components.device,
        generator,
    )


@hookimpl
def arc_denoise_step(
    components: WanComponents,
    latents: torch.Tensor,
    step: StepContext,
    conditioning: dict[str, torch.Tensor],
    params: WanParams,
) -> torch.Tensor:
    transformer = components.transformer
    x = latents.to(transformer.dtype)
    timestep = step.timestep.expand(latents.shape[0])
    cache_kwargs = {"step_index": step.index, "sigma": step.sigma, "num_inference_steps": step.total}
    cfg = "negative_prompt_embeds" in conditioning and params.guidance > 1.0
    if cfg and batch_guidance(params.batch_guidance, x.device):
        # Both prompts are padded to max_sequence_length by the encoder, so they stack;
        # where they do not (and Wan takes no text mask), the two passes below run.
        branches = [
            {"hidden_states": x, "timestep": timestep, "encoder_hidden_states": conditioning[key]}
            for key in ("prompt_embeds", "negative_prompt_embeds")
        ]
        with transformer.cache_context("cond_uncond", **cache_kwargs):
            both = run_batched(lambda **kw: transformer(**kw, return_dict=False)[0], branches)
        if both is not None:
            return guided(both[0], both[1], params.guidance)
    with transformer.cache_context("cond", **cache_kwargs):
        out = transformer(
            hidden_states=x, timestep=timestep, encoder_hidden_states=conditioning["prompt_embeds"], return_dict=False
        )[0]
    if "negative_prompt_embeds" in conditioning and params.guidance > 1.0:
        with transformer.cache_context("uncond", **cache_kwargs):
            uncond = transformer(
                hidden_states=x,
                timestep=timestep,
                encoder_hidden_states=conditioning["negative_prompt_embeds"],
                return_dict=False,
            )[0]
        out = guided(out, uncond, params.guidance)
    return out


@hookimpl
def arc_decode(components: WanComponents, latents: torch.Tensor, params: WanParams) -> torch.Tensor:
    return decode_frames(components.pipe.vae, components.pipe.video_processor, latents)


def plugins_with_wan() -> Any:
    """The installed plugins, or this plugin registered by hand where it is only on the
    path (a bare GPU image without entry points)."""
    import sys

    from arc_fabric_core.dispatch.plugins import plugins_with

    return plugins_with(sys.modules[__name__], "wan21")


# Transformer width and feed-forward width of each published size (tiny variants run at a
# fraction of these; their margin hardly matters).
_WIDTHS = {"1.3b": (1536, 8960), "14b": (5120, 13824)}


@hookimpl
def arc_activation_bytes(model: ModelRef, params: WanParams) -> int:
    """Peak memory beside the weights: the larger of one transformer call (cond and
    uncond one after the other, or as one call of batch 2 with ``batch_guidance=on``)
    and the VAE decode, calibrated on an H200 at
    81x480x832: the 1.3B transformer's forward peaked 1.49 GiB above its weights, the
    VAE decode 8.76 GiB (fp32 features of its causal chunks at full resolution) — each
    formula below gives ~5-25% more than measured."""
    # A tiny variant's transformer and VAE (base_dim 3) are a sliver of the real ones.
    dim, ffn = (64, 128) if model.variant.tiny else _WIDTHS.get(model.variant.name, _WIDTHS["1.3b"])
    vae_width = 3 if model.variant.tiny else 96
    tokens = latent_tokens(params.num_frames, params.height, params.width, frames_per_token=4, pixels_per_token=16)
    batch = 2 if params.guidance > 1.0 and params.batch_guidance == "on" else 1
    transformer = transformer_call_bytes(tokens, dim, ffn, item_bytes=4, batch=batch)
    return max(transformer, wan_vae_decode_bytes(params.num_frames, params.height, params.width, vae_width))
