"""diffusers' own LTX pipelines over a loaded model: the references our sessions must equal."""

from __future__ import annotations

from typing import Any

import torch

# The multi-scale recipe's trick for the refinement pass: LTXConditionPipeline re-noises
# given latents only when denoise_strength < 1, and then drops the first
# int(n * (1 - strength)) or so timesteps; with one throw-away timestep in front and a
# strength just below 1 it drops exactly that one and re-noises to the next.
PASS2_LEAD_TIMESTEP = 1000.0
PASS2_DENOISE_STRENGTH = 0.999


def reference_pipeline(components: Any) -> Any:
    """``LTXConditionPipeline`` sharing ``components``' modules, with a fresh scheduler of the
    same configuration (the one a session of ours builds), progress bar off."""
    from diffusers import LTXConditionPipeline

    pipe = components.pipe
    ref = LTXConditionPipeline(
        scheduler=type(pipe.scheduler).from_config(pipe.scheduler.config),
        vae=pipe.vae,
        text_encoder=pipe.text_encoder,
        tokenizer=pipe.tokenizer,
        transformer=pipe.transformer,
    )
    ref.set_progress_bar_config(disable=True)
    return ref


def reference_upsample_pipeline(components: Any) -> Any:
    """``LTXLatentUpsamplePipeline`` over ``components``' latent upsampler and VAE."""
    from diffusers import LTXLatentUpsamplePipeline

    ref = LTXLatentUpsamplePipeline(vae=components.pipe.vae, latent_upsampler=components.upsample_pipe.latent_upsampler)
    ref.set_progress_bar_config(disable=True)
    return ref


def reference_call_kwargs(params: Any, generator: torch.Generator | None = None) -> dict[str, Any]:
    """Our parameters (an ``LTXParams``) as ``LTXConditionPipeline.__call__``'s, for one pass
    (multi-scale: the first, at the reduced size); a CPU generator seeded with the seed
    unless one is given (multi-scale passes one generator on through every call)."""
    height, width = params.pass_size(0)
    kwargs = dict(
        prompt=params.prompt,
        negative_prompt=params.negative_prompt,
        height=height,
        width=width,
        num_frames=params.num_frames,
        frame_rate=params.fps,
        guidance_scale=params.guidance,
        guidance_rescale=params.guidance_rescale,
        max_sequence_length=params.max_sequence_length,
        decode_timestep=params.decode_timestep,
        decode_noise_scale=params.decode_noise_scale,
        generator=generator if generator is not None else torch.Generator("cpu").manual_seed(params.seed),
    )
    if params.timesteps is not None:
        kwargs["timesteps"] = list(params.timesteps)
    else:
        kwargs["num_inference_steps"] = params.steps
    return kwargs


def reference_pass2_kwargs(params: Any, latents: torch.Tensor, generator: torch.Generator) -> dict[str, Any]:
    """The refinement pass of the multi-scale recipe: twice the first pass's size, the
    upsampled ``latents`` re-noised to ``pass2_timesteps[0]``, then those timesteps."""
    height, width = params.pass_size(1)
    kwargs = reference_call_kwargs(params, generator)
    kwargs.pop("num_inference_steps", None)
    return kwargs | dict(
        height=height,
        width=width,
        latents=latents,
        timesteps=[PASS2_LEAD_TIMESTEP, *params.pass2_timesteps],
        denoise_strength=PASS2_DENOISE_STRENGTH,
    )


def reference_multiscale(
    components: Any, params: Any, components_2: Any = None, output_type: str = "latent"
) -> torch.Tensor:
    """The whole multi-scale recipe with diffusers' pipelines and one generator:
    first pass -> latent upsampler (AdaIN, tone map) -> refinement pass. With
    ``components_2`` another model (its upsampler too) refines: 2B then 13B."""
    generator = torch.Generator("cpu").manual_seed(params.seed)
    second = components_2 if components_2 is not None else components
    first = reference_pipeline(components)(**reference_call_kwargs(params, generator), output_type="latent").frames
    upsampled = reference_upsample_pipeline(second)(
        latents=first,
        adain_factor=params.adain_factor,
        tone_map_compression_ratio=params.tone_map_compression_ratio,
        output_type="latent",
    ).frames
    refine = reference_pipeline(second)
    return refine(**reference_pass2_kwargs(params, upsampled, generator), output_type=output_type).frames
