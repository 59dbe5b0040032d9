"""A test plugin: the toy made autoregressive, so that extend and rewind have a model
that runs in an instant. Register ``Blocks()``; its model is ``blocks``."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from arc_fabric_core.contract.hookspecs import hookimpl
from arc_toy import plugin as toy


class Blocks:
    """The toy made autoregressive: a block of frames per pass (2 frames, ``steps``
    steps each), extended and rewound by block. Closed form, like the toy."""

    @hookimpl
    def arc_register_models(self, register: Any) -> None:
        register(replace(toy.TOY, name="blocks", description="The toy, a block of frames at a time."))

    @hookimpl
    def arc_load(self, model: Any, device: Any) -> Any:
        return {"device": device}

    @hookimpl
    def arc_encode(self, components: dict, params: Any) -> Any:
        return toy.arc_encode(components=components, params=params)

    @hookimpl
    def arc_schedule(self, components: dict, params: Any) -> Any:
        return toy.arc_schedule(components=components, params=params)

    @hookimpl
    def arc_prepare_latents(self, components: dict, params: Any, generator: Any) -> Any:
        return toy.arc_prepare_latents(components=components, params=params, generator=generator)

    @hookimpl
    def arc_denoise_step(self, latents: Any, step: Any, conditioning: Any, params: Any) -> Any:
        return toy.arc_denoise_step(latents=latents, step=step, conditioning=conditioning, params=params)

    @hookimpl
    def arc_decode(self, latents: Any) -> Any:
        return toy.arc_decode(latents=latents)

    @hookimpl
    def arc_passes(self, params: Any) -> list[int]:
        return [params.steps] * max(1, params.num_frames // 2)

    @hookimpl
    def arc_next_pass(self, latents: Any) -> Any:
        return latents

    @hookimpl
    def arc_extend_params(self, params: Any, blocks: int) -> dict[str, Any]:
        return {"num_frames": params.num_frames + 2 * blocks}

    @hookimpl
    def arc_rewind_params(self, prompt: str | None) -> dict[str, Any]:
        return {"prompt": prompt} if prompt is not None else {}
