"""diffusers' own Wan pipelines over a loaded model: the references our sessions must equal."""

from __future__ import annotations

from typing import Any


def _over(pipeline_class: Any, components: Any, shift: float, **extra: Any) -> Any:
    """``pipeline_class`` sharing ``components``' modules, with a fresh scheduler at ``shift``
    (the same scheduler a session of ours builds), progress bar off."""
    pipe = components.pipe
    scheduler = type(pipe.scheduler).from_config(pipe.scheduler.config, flow_shift=shift)
    ref = pipeline_class(
        tokenizer=pipe.tokenizer,
        text_encoder=pipe.text_encoder,
        vae=pipe.vae,
        transformer=pipe.transformer,
        scheduler=scheduler,
        **extra,
    )
    ref.set_progress_bar_config(disable=True)
    return ref


def reference_pipeline(components: Any, shift: float = 5.0) -> Any:
    """``WanPipeline``: the reference for generation."""
    from diffusers import WanPipeline

    return _over(WanPipeline, components, shift)


def reference_two_stage(components: Any, components_2: Any, boundary_ratio: float, shift: float = 5.0) -> Any:
    """``WanPipeline`` with ``transformer_2`` and ``boundary_ratio`` (Wan 2.2's two experts):
    the reference for a two-stage hybrid with a timestep boundary."""
    from diffusers import WanPipeline

    return _over(
        WanPipeline, components, shift, transformer_2=components_2.pipe.transformer, boundary_ratio=boundary_ratio
    )


def reference_video2video(components: Any, shift: float = 5.0) -> Any:
    """``WanVideoToVideoPipeline``: the reference for edits."""
    from diffusers import WanVideoToVideoPipeline

    return _over(WanVideoToVideoPipeline, components, shift)


def reference_call_kwargs(params: dict[str, Any]) -> dict[str, Any]:
    """Our parameter names mapped to ``WanPipeline.__call__``'s, with the same CPU generator."""
    import torch

    return dict(
        prompt=params["prompt"],
        negative_prompt=params["negative_prompt"],
        num_frames=params["num_frames"],
        height=params["height"],
        width=params["width"],
        num_inference_steps=params["steps"],
        guidance_scale=params["guidance"],
        generator=torch.Generator("cpu").manual_seed(params["seed"]),
    )
