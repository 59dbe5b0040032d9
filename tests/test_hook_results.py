"""What a plugin's stage hooks return is checked where it enters the engine: a result
outside the contract fails in one line naming the plugin, the hook, what was expected and
what came, and a session whose video could not be decoded is not `completed`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from arc_fabric_core.contract.hookspecs import hookimpl
from arc_fabric_core.contract.models import LatentSpace, ModelSpec, VariantSpec
from arc_fabric_core.contract.schedule import Schedule
from arc_fabric_core.dispatch.hook_results import PluginResultError
from arc_fabric_core.dispatch.plugins import Plugins
from arc_fabric_core.engine.facade import Engine
from arc_fabric_core.runtime.model_cache import ModelCache
from arc_fabric_core.store.files import SessionStore
from arc_fabric_core.store.session import SessionStatus
from arc_fabric_core.testing.sized import SizedParams as Params

PARAMS = {"num_frames": 3, "height": 8, "width": 8, "steps": 3}


class Faulty:
    """A closed-form model; ``breaks`` names the hook that returns something wrong."""

    def __init__(self, breaks: str | None = None) -> None:
        self.breaks = breaks

    @hookimpl
    def arc_register_models(self, register: Any) -> None:
        space = LatentSpace(family="rgb", channels=3, temporal_compression=1, spatial_compression=1)
        variants = (VariantSpec(name="default", description="closed form"),)
        register(ModelSpec("faulty", "breaks one hook", Params, space, variants, needs_weights=False))

    @hookimpl
    def arc_load(self, device: torch.device) -> dict[str, Any]:
        return {"device": device}

    @hookimpl
    def arc_encode(self) -> Any:
        if self.breaks == "arc_encode":
            return [torch.zeros(1)]
        return {"target": torch.zeros(1, 3, 1, 1, 1)}

    @hookimpl
    def arc_schedule(self, params: Params) -> Any:
        from diffusers import FlowMatchEulerDiscreteScheduler

        scheduler = FlowMatchEulerDiscreteScheduler(shift=1.0)
        scheduler.set_timesteps(params.steps)
        scheduler.set_begin_index(0)
        if self.breaks == "arc_schedule":
            return scheduler.timesteps
        return Schedule(timesteps=scheduler.timesteps, scheduler=scheduler, sigmas=scheduler.sigmas)

    @hookimpl
    def arc_prepare_latents(self, params: Params, generator: torch.Generator) -> torch.Tensor:
        shape = (1, 3, params.num_frames, params.height, params.width)
        latents = torch.randn(shape, generator=generator)
        return latents[0] if self.breaks == "arc_prepare_latents" else latents

    @hookimpl
    def arc_denoise_step(self, latents: torch.Tensor, step: Any, conditioning: dict[str, torch.Tensor]) -> Any:
        output = (latents - conditioning["target"]) / max(step.sigma or 1.0, 1e-4)
        return output[:, :, :1] if self.breaks == "arc_denoise_step" else output

    @hookimpl
    def arc_decode(self, latents: torch.Tensor) -> torch.Tensor:
        frames = ((latents[0] + 1) / 2).clamp(0, 1)  # (C, F, H, W): not the documented layout
        if self.breaks == "arc_decode":
            return frames
        if self.breaks == "arc_decode_range":
            return frames.permute(1, 2, 3, 0) * 255
        return frames.permute(1, 2, 3, 0)


def engine_for(tmp_path: Path, breaks: str | None) -> Engine:
    plugins = Plugins(load_entrypoints=False)
    plugins.register(Faulty(breaks), name="faulty-plugin")
    return Engine(SessionStore(tmp_path / "store"), plugins=plugins, device="cpu", cache=ModelCache(plugins))


def test_a_well_behaved_plugin_passes_every_check(tmp_path: Path) -> None:
    engine = engine_for(tmp_path, None)
    session = engine.run(engine.create("faulty", PARAMS))
    assert session.doc.status is SessionStatus.COMPLETED
    assert tuple(engine.decode(session).shape) == (3, 8, 8, 3)


@pytest.mark.parametrize(
    ("hook", "expected", "got"),
    [
        ("arc_encode", "expected a dict of tensors keyed by name", "returned a list"),
        ("arc_schedule", "expected a Schedule", "returned a float32 tensor of shape (3)"),
        ("arc_prepare_latents", "expected floating latents of shape (1, C, F, H, W)", "shape (3, 3, 8, 8)"),
        ("arc_denoise_step", "shaped like the latents (1, 3, 3, 8, 8)", "shape (1, 3, 1, 8, 8)"),
    ],
)
def test_a_wrong_result_fails_in_one_line_naming_plugin_hook_and_shapes(
    tmp_path: Path, hook: str, expected: str, got: str
) -> None:
    engine = engine_for(tmp_path, hook)
    session = engine.create("faulty", PARAMS)
    with pytest.raises(PluginResultError) as info:
        engine.run(session)
    message = str(info.value)
    assert message.startswith(f"plugin 'faulty-plugin': {hook} returned"), message
    assert expected in message and got in message and "\n" not in message, message
    # The run failed with the error recorded; it is not completed.
    doc = engine.store.load_doc(session.id)
    assert doc.status is SessionStatus.FAILED and hook in (doc.error or "")


def test_a_decode_in_the_wrong_layout_leaves_the_session_failed_not_completed(tmp_path: Path) -> None:
    engine = engine_for(tmp_path, "arc_decode")
    session = engine.run(engine.create("faulty", PARAMS))
    latents = engine.final_latents(session)
    with pytest.raises(PluginResultError) as info:
        engine.decode(session)
    assert str(info.value) == (
        "plugin 'faulty-plugin': arc_decode returned a float32 tensor of shape (3, 3, 8, 8); "
        "expected frames of shape (3, 8, 8, 3) (F, H, W, RGB), floating, in [0, 1]"
    )
    doc = engine.store.load_doc(session.id)
    assert doc.status is SessionStatus.FAILED
    assert doc.error is not None and doc.error.startswith("the video could not be decoded: plugin 'faulty-plugin'")
    # The latents are kept: once the plugin is fixed the video can be made.
    assert torch.equal(engine.final_latents(session.id), latents)


def test_frames_outside_zero_one_are_refused(tmp_path: Path) -> None:
    engine = engine_for(tmp_path, "arc_decode_range")
    session = engine.run(engine.create("faulty", PARAMS))
    with pytest.raises(PluginResultError, match=r"arc_decode returned .* with values in \[128, 128\]"):
        engine.decode(session)
