"""Hybrid schedules and multi-pass models in the engine, on closed-form plugins."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from arc_fabric_core.contract.errors import InputError
from arc_fabric_core.contract.hookspecs import hookimpl
from arc_fabric_core.contract.models import LatentSpace, ModelSpec, VariantSpec
from arc_fabric_core.contract.schedule import Schedule
from arc_fabric_core.dispatch.plugins import Plugins
from arc_fabric_core.engine.facade import Engine
from arc_fabric_core.engine.hybrid import HybridSpec, end_steps, parse_hybrid
from arc_fabric_core.store.files import SessionStore
from arc_toy.plugin import ToyParams

PARAMS = {"prompt": "bands", "steps": 6, "num_frames": 4, "height": 16, "width": 16, "seed": 3}


class TwoPass:
    """A closed-form model that denoises at a quarter size, upsamples, refines at half
    size, and decodes to the full size (as LTX's multi-scale does)."""

    SPEC = ModelSpec(
        name="twopass",
        description="Quarter size for 3 steps, then half size for 2.",
        params=ToyParams,
        latent_space=LatentSpace(family="rgb", channels=3, temporal_compression=1, spatial_compression=1),
        variants=(VariantSpec(name="default", description="No weights.", tiny=True),),
    )

    def __init__(self) -> None:
        self.calls = {"denoise": 0, "next_pass": 0}

    @hookimpl
    def arc_register_models(self, register):
        register(self.SPEC)

    @hookimpl
    def arc_load(self, device):
        return {"device": device}

    @hookimpl
    def arc_encode(self, params):
        return {"tint": torch.tensor([0.5, -0.2, 0.1]).view(1, 3, 1, 1, 1)}

    @hookimpl
    def arc_passes(self, params):
        return [3, 2]

    @hookimpl
    def arc_schedule(self, params, pass_index):
        from diffusers import FlowMatchEulerDiscreteScheduler

        scheduler = FlowMatchEulerDiscreteScheduler(shift=1.0)
        if pass_index == 0:
            scheduler.set_timesteps(3)
        else:
            scheduler.set_timesteps(sigmas=[0.6, 0.3])  # a refinement from a re-noised start
        scheduler.set_begin_index(0)
        return Schedule(timesteps=scheduler.timesteps, scheduler=scheduler, sigmas=scheduler.sigmas)

    @hookimpl
    def arc_prepare_latents(self, params, generator):
        shape = (1, 3, params.num_frames, params.height // 4, params.width // 4)
        return torch.randn(shape, generator=generator)

    @hookimpl
    def arc_next_pass(self, latents, schedule, generator):
        self.calls["next_pass"] += 1
        up = torch.nn.functional.interpolate(latents, scale_factor=(1, 2, 2), mode="nearest")
        sigma = float(schedule.sigmas[0])
        return (1 - sigma) * up + sigma * torch.randn(up.shape, generator=generator)

    @hookimpl
    def arc_denoise_step(self, latents, step, conditioning):
        self.calls["denoise"] += 1
        return (latents - conditioning["tint"]) / max(step.sigma or 1.0, 1e-4) * 0.9

    @hookimpl
    def arc_decode(self, latents, params):
        size = (latents.shape[2], params.height, params.width)
        video = torch.nn.functional.interpolate(latents, size=size, mode="nearest")
        return ((video[0].permute(1, 2, 3, 0) + 1) / 2).clamp(0, 1)


class Other:
    """A model in another latent space: it cannot take the toy's latents."""

    SPEC = ModelSpec(
        name="other",
        description="Four channels.",
        params=ToyParams,
        latent_space=LatentSpace(family="other-vae", channels=4, temporal_compression=4, spatial_compression=8),
        variants=(VariantSpec(name="default", description="No weights.", tiny=True),),
    )

    @hookimpl
    def arc_register_models(self, register):
        register(self.SPEC)

    @hookimpl
    def arc_load(self, device):
        return {}

    @hookimpl
    def arc_encode(self):
        return {}

    @hookimpl
    def arc_schedule(self):
        raise AssertionError("never reached")

    @hookimpl
    def arc_prepare_latents(self):
        raise AssertionError("never reached")

    @hookimpl
    def arc_denoise_step(self):
        raise AssertionError("never reached")

    @hookimpl
    def arc_decode(self):
        raise AssertionError("never reached")


@pytest.fixture
def twopass() -> TwoPass:
    return TwoPass()


@pytest.fixture
def plugins(toy_plugins: Plugins, twopass: TwoPass) -> Plugins:
    toy_plugins.register(twopass, name="twopass")
    toy_plugins.register(Other(), name="other")
    return toy_plugins


@pytest.fixture
def engine(tmp_path: Path, plugins: Plugins) -> Engine:
    return Engine(SessionStore(tmp_path / "store"), plugins=plugins, device="cpu")


def run(engine: Engine, model: str, params: dict, spec: HybridSpec | None = None) -> torch.Tensor:
    session = engine.create(model, params, hybrid=spec)
    engine.run(session)
    return engine.final_latents(session)


# ---------------------------------------------------------------- the config


@pytest.mark.parametrize(
    ("values", "field", "says"),
    [
        ({"stages": [{}, {}]}, "schedule", "2 stages need 1 boundary"),
        ({"stages": [{}, {}], "boundary": 1.2}, "schedule", "within (0, 1)"),
        ({"stages": [{}, {}, {}], "boundaries": [0.6, 0.4]}, "schedule", "rise strictly"),
        ({"stages": [{}, {}, {}], "boundaries": [0.4, 0.6], "unit": "timestep"}, "schedule", "fall"),
        ({"stages": [{}, {}], "boundary": 2.5, "unit": "step"}, "schedule", "whole steps"),
        ({"stages": [{}, {}], "boundary": 0.5, "unit": "noise"}, "schedule.unit", "fraction"),
        ({"stages": [{"modle": "toy"}, {}], "boundary": 0.5}, "schedule.stages.0.modle", "allowed"),
        ({"stages": []}, "schedule.stages", "at least 1"),
    ],
)
def test_bad_schedule_config_names_the_field(values: dict, field: str, says: str) -> None:
    with pytest.raises(InputError) as info:
        parse_hybrid(values)
    assert info.value.field == field and says in info.value.message, info.value


def test_end_steps_for_each_unit() -> None:
    timesteps = [999, 961, 909, 833, 714, 501]
    assert end_steps("fraction", [0.5], 6, None) == [3, 6]
    assert end_steps("step", [1, 4], 6, None) == [1, 4, 6]
    assert end_steps("timestep", [0.9], 6, None) is None  # waits for the schedule
    # Wan 2.2: the first model runs while t >= 0.9 * 1000.
    assert end_steps("timestep", [0.9, 0.6], 6, timesteps) == [3, 5, 6]
    assert end_steps("timestep", [0.1], 6, timesteps) == [6, 6]  # never hands over
    with pytest.raises(InputError, match="below the 6 steps"):
        end_steps("step", [6], 6, None)
    sigmas = [1.0, 0.8, 0.6, 0.4, 0.2, 0.1]
    assert end_steps("sigma", [0.5], 6, timesteps, None) is None
    assert end_steps("sigma", [0.5], 6, timesteps, sigmas) == [3, 6]  # runs while sigma >= 0.5
    with pytest.raises(InputError, match="no sigma for every step"):
        end_steps("sigma", [0.5], 6, timesteps, [])


# ---------------------------------------------------------------- hybrids


def test_incompatible_stages_are_refused_before_any_compute(engine: Engine) -> None:
    spec = HybridSpec(stages=[{"model": "toy"}, {"model": "other"}], boundary=0.5)
    with pytest.raises(InputError) as info:
        engine.create("toy", PARAMS, hybrid=spec)
    assert info.value.field == "schedule.stages"
    assert "other-vae 4ch" in info.value.message and "rgb 3ch" in info.value.message
    assert engine.cache.loads == 0 and engine.store.list_ids() == []


def test_stage_guidance_is_checked() -> None:
    with pytest.raises(InputError) as info:
        parse_hybrid({"stages": [{}, {"guidance": -1}], "boundary": 0.5})
    assert info.value.field == "schedule.stages.1.guidance"


def test_same_model_hybrid_equals_single_model(engine: Engine) -> None:
    single = run(engine, "toy", PARAMS)
    for spec in (
        HybridSpec(stages=[{}, {}], boundary=0.5),
        HybridSpec(stages=[{}, {}, {}], boundaries=[2, 5], unit="step"),
        HybridSpec(stages=[{}, {}], boundary=0.5, unit="timestep"),
        HybridSpec(stages=[{}, {}], boundary=0.5, unit="sigma"),
    ):
        assert torch.equal(run(engine, "toy", PARAMS, spec), single), spec


def test_stage_guidance_reaches_the_stage(engine: Engine) -> None:
    # The toy ignores guidance; its grain lives in params too, so check the stage params instead.
    session = engine.create("toy", PARAMS, hybrid=HybridSpec(stages=[{}, {"guidance": 3.0}], boundary=0.5))
    assert [st.params.guidance for st in session.stages] == [1.0, 3.0]
    reopened = engine.open(session.id)
    assert [st.params.guidance for st in reopened.stages] == [1.0, 3.0]


def test_hand_off_from_a_plain_session(engine: Engine) -> None:
    parent = engine.create("toy", PARAMS)
    engine.run(parent)
    child = engine.fork(parent.id, step=3, hybrid=HybridSpec(stages=[{}, {}], boundary=3, unit="step"))
    engine.run(child)
    assert torch.equal(engine.final_latents(child), engine.final_latents(parent))
    with pytest.raises(InputError, match="latent space"):
        engine.fork(parent.id, step=3, hybrid=HybridSpec(stages=[{}, {"model": "other"}], boundary=3, unit="step"))


# ---------------------------------------------------------------- passes


def test_passes_number_steps_across_passes(engine: Engine, twopass: TwoPass) -> None:
    session = engine.create("twopass", PARAMS)
    assert session.doc.total_steps == 5 and session.doc.passes == [3, 2]
    engine.run(session)
    assert twopass.calls == {"denoise": 5, "next_pass": 1}
    latents = engine.final_latents(session)
    assert latents.shape == (1, 3, 4, 8, 8)
    assert len(session.doc.timesteps) == 5
    assert engine.decode(session).shape == (4, 16, 16, 3)


def test_resume_at_every_step_equals_uninterrupted(engine: Engine, plugins: Plugins) -> None:
    full = run(engine, "twopass", PARAMS)
    for until in range(1, 5):
        partial = engine.create("twopass", PARAMS)
        engine.run(partial, until=until)
        fresh = Engine(engine.store, plugins=plugins, device="cpu")
        assert torch.equal(fresh.final_latents(fresh.resume(partial.id)), full), f"resume at {until}"


def test_the_pass_boundary_is_a_preview_and_a_fork_point(tmp_path: Path, plugins: Plugins, twopass: TwoPass) -> None:
    engine = Engine(SessionStore(tmp_path / "s"), plugins=plugins, device="cpu", checkpoint_every=2, checkpoint_keep=1)
    session = engine.create("twopass", PARAMS)
    engine.run(session, until=3)  # stop where pass 0 ends
    calls = dict(twopass.calls)
    preview, step = engine.preview_latents(session.id)
    # The finished low-resolution pass, as it is: no model call for the preview.
    assert step == 3 and preview.shape == (1, 3, 4, 4, 4) and twopass.calls == calls
    frames = engine.decode(engine.open(session.id), preview, step=step)
    assert frames.shape == (4, 16, 16, 3)
    engine.resume(session.id)
    assert {c.step for c in engine.store.load_doc(session.id).checkpoints} >= {3, 5}  # the boundary is kept
    same = engine.fork(session.id, step=3)
    engine.run(same)
    assert torch.equal(engine.final_latents(same), engine.final_latents(session.id))
    reseeded = engine.fork(session.id, step=3, overrides={"seed": 99})
    engine.run(reseeded)
    assert not torch.equal(engine.final_latents(reseeded), engine.final_latents(session.id))


def test_an_edit_stays_in_the_last_pass(engine: Engine) -> None:
    session = engine.create("twopass", PARAMS)
    engine.run(session)
    with pytest.raises(InputError, match=r"start at a step in 3\.\.4"):
        engine.edit(session.id, step=1)
    edit = engine.edit(session.id, step=3, overrides={"seed": 5})
    engine.run(edit)
    assert engine.final_latents(edit).shape == (1, 3, 4, 8, 8)


def test_a_masked_edit_maps_pixels_onto_the_last_pass_grid(engine: Engine) -> None:
    from arc_fabric_core.engine.edit_mask import EditMask

    session = engine.create("twopass", PARAMS)
    engine.run(session)
    # The left 4 of 16 pixel columns are the left 2 of the 8 latent columns of the last pass.
    edit = engine.edit(session.id, step=3, overrides={"seed": 5}, mask=EditMask(rect=(0, 0, 4, 16)))
    engine.run(edit)
    before, after = engine.final_latents(session.id), engine.final_latents(edit)
    assert torch.equal(after[..., 2:], before[..., 2:])
    assert not torch.equal(after[..., :2], before[..., :2])
