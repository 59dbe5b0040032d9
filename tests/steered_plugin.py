"""A test plugin: the toy made autoregressive and steered by inputs beside text — an
array of actions, two rows per block (one per frame), and an optional first image.
Register ``Steered()``; its model is ``steered``.

Each block (a pass) denoises only its own two frames toward the toy's target, shifted
by that block's actions; the image, when given, is blended into the target by
``arc_encode``. Noise is drawn frame by frame, so the first frames of a longer video are
those of a shorter one: extending by a block equals generating the longer video at once.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import torch

from arc_fabric_core.contract.hookspecs import hookimpl
from arc_fabric_core.contract.inputs import InputSpec
from arc_toy import plugin as toy

FRAMES_PER_BLOCK = 2
INPUTS = (
    InputSpec(
        name="actions",
        kind="actions",
        description="one row per frame: brightness, then red shift",
        shape=("*", 2),
        per_chunk=FRAMES_PER_BLOCK,
    ),
    InputSpec(
        name="image",
        kind="image",
        description="a first frame, RGB in [0, 1]",
        shape=(3, "height", "width"),
        required=False,
        minimum=0.0,
        maximum=1.0,
    ),
)
STEERED = replace(toy.TOY, name="steered", description="The toy, a block at a time, steered by actions.", inputs=INPUTS)


class Steered:
    def __init__(self) -> None:
        # (pass index, the actions arc_denoise_step was given), one per call.
        self.seen: list[tuple[int, torch.Tensor]] = []

    @hookimpl
    def arc_register_models(self, register: Any) -> None:
        register(STEERED)

    @hookimpl
    def arc_load(self, device: Any) -> Any:
        return {"device": device}

    @hookimpl
    def arc_encode(self, components: dict, inputs: dict[str, torch.Tensor]) -> Any:
        # Independent of the frame count (an extension shares its parent's conditioning).
        image = inputs.get("image")
        return {"image": image * 2 - 1 if image is not None else torch.zeros(0, device=components["device"])}

    @hookimpl
    def arc_schedule(self, components: dict, params: Any) -> Any:
        return toy.arc_schedule(components=components, params=params)

    @hookimpl
    def arc_prepare_latents(self, components: dict, params: Any, generator: torch.Generator) -> Any:
        frames = [
            torch.randn((1, 3, 1, params.height, params.width), generator=generator) for _ in range(params.num_frames)
        ]
        return torch.cat(frames, dim=2).to(components["device"])

    @hookimpl
    def arc_denoise_step(
        self, latents: Any, step: Any, conditioning: Any, params: Any, inputs: dict[str, torch.Tensor]
    ) -> Any:
        actions = inputs["actions"]
        self.seen.append((step.pass_index, actions.clone()))
        first = step.pass_index * FRAMES_PER_BLOCK
        block = slice(first, first + FRAMES_PER_BLOCK)
        target = toy._target(params, latents.device)[:, :, block]
        image = conditioning["image"]
        if image.numel():
            target = 0.5 * target + 0.5 * image.view(1, 3, 1, *image.shape[1:])
        target += actions[:, 0].view(1, 1, -1, 1, 1)
        target[:, 0] += actions[:, 1].view(1, -1, 1, 1)
        sigma = max(step.sigma or 1.0, 1e-4)
        output = torch.zeros_like(latents)
        output[:, :, block] = (1 - params.grain) * (latents[:, :, block] - target) / sigma
        return output

    @hookimpl
    def arc_decode(self, latents: Any) -> Any:
        return toy.arc_decode(latents=latents)

    @hookimpl
    def arc_passes(self, params: Any) -> list[int]:
        return [params.steps] * max(1, params.num_frames // FRAMES_PER_BLOCK)

    @hookimpl
    def arc_next_pass(self, latents: Any) -> Any:
        return latents

    @hookimpl
    def arc_extend_params(self, params: Any, blocks: int) -> dict[str, Any]:
        return {"num_frames": params.num_frames + FRAMES_PER_BLOCK * blocks}
