"""Our sessions equal diffusers' own LTX pipelines on the same components and seed, bit for bit:
LTXConditionPipeline for one pass; for multi-scale, LTXConditionPipeline at the reduced size,
LTXLatentUpsamplePipeline, and LTXConditionPipeline again on the upsampled latents, one
generator going on through all three (the documented multi-scale recipe)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from arc_fabric_core.dispatch.plugins import get_plugins
from arc_fabric_core.engine.facade import Engine, Session
from arc_fabric_core.runtime.model_cache import ModelCache
from arc_fabric_core.store.files import SessionStore
from arc_ltx.reference import (
    reference_call_kwargs,
    reference_multiscale,
    reference_pipeline,
    reference_upsample_pipeline,
)


@pytest.fixture(scope="module")
def cache() -> ModelCache:
    return ModelCache(get_plugins())


@pytest.fixture
def engine(tmp_path: Path, cache: ModelCache) -> Engine:
    return Engine(SessionStore(tmp_path / "store"), device="cpu", cache=cache)


def run_ours(engine: Engine, params: dict, variant: str = "tiny") -> Session:
    session = engine.create("ltx", params, variant=variant)
    engine.run(session)
    return session


def components(engine: Engine, session: Session) -> object:
    return engine.cache.get(session.ref, engine.device, "auto")


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"guidance": 3.0},
        {"guidance": 4.0, "guidance_rescale": 0.7, "seed": 11},
        {"timestep_schedule": "distilled", "timesteps": None, "fps": 24},
        {"timesteps": None, "timestep_schedule": "linear-quadratic", "steps": 5},
        {"num_frames": 17, "height": 32, "width": 64, "max_sequence_length": 16},
    ],
    ids=["custom-timesteps", "cfg", "cfg-rescale", "distilled-8", "linear-quadratic", "odd-size"],
)
def test_final_latents_equal_ltx_condition_pipeline(engine: Engine, small: dict, overrides: dict) -> None:
    session = run_ours(engine, {**small, **overrides})
    ours = engine.final_latents(session)
    theirs = reference_pipeline(components(engine, session))(
        **reference_call_kwargs(session.params), output_type="latent"
    ).frames
    assert ours.shape == theirs.shape
    # Bit for bit: the same modules, the same arithmetic, the same RNG draws.
    assert torch.equal(ours, theirs), (ours - theirs).abs().max()


def test_decode_equals_ltx_condition_pipeline(engine: Engine, small: dict) -> None:
    session = run_ours(engine, {**small, "guidance": 3.0})
    ours = engine.decode(session)
    frames = reference_pipeline(components(engine, session))(
        **reference_call_kwargs(session.params), output_type="pt"
    ).frames[0]  # (F, C, H, W)
    assert ours.shape == (9, 64, 96, 3)
    assert torch.equal(ours, frames.permute(0, 2, 3, 1).float())


def test_distilled_real_variant_defaults_run_the_distilled_schedule(engine: Engine, tiny_folder: Path) -> None:
    session = engine.create("ltx", {"prompt": "a fox"}, variant="2b-distilled", weights=str(tiny_folder))
    assert session.params.timesteps == [1000, 993, 987, 981, 975, 909, 725, 421]
    assert session.params.guidance == 1.0 and session.doc.total_steps == 8


# ---------------------------------------------------------------- multi-scale (two passes)

MULTISCALE = {"multiscale": True, "timestep_schedule": "distilled", "timesteps": None}


@pytest.mark.multiscale
@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"guidance": 3.0, "adain_factor": 0.5, "tone_map_compression_ratio": 0.6, "seed": 3},
        {"timestep_schedule": "linear-quadratic", "steps": 4, "pass2_timesteps": [950, 600], "adain_factor": 0.0},
        {"height": 96, "width": 128, "downscale_factor": 0.5},
    ],
    ids=["distilled-7+3", "cfg-adain-tonemap", "linear-quadratic-4+2", "half-size"],
)
def test_multiscale_equals_the_diffusers_recipe(engine: Engine, small: dict, overrides: dict) -> None:
    session = run_ours(engine, {**small, **MULTISCALE, **overrides})
    p = session.params
    assert session.doc.passes == p.passes() and session.doc.total_steps == sum(p.passes())
    ours = engine.final_latents(session)
    theirs = reference_multiscale(components(engine, session), p)
    # The refinement pass runs at twice the first pass's size.
    r = components(engine, session).pipe.vae_spatial_compression_ratio
    h1, w1 = p.pass_size(1)
    assert ours.shape == theirs.shape and ours.shape[-2:] == (h1 // r, w1 // r)
    assert torch.equal(ours, theirs), (ours - theirs).abs().max()
    frames = engine.decode(session)
    assert frames.shape == (p.num_frames, p.height, p.width, 3)  # decoded at 2x, resized to the asked size
    assert frames.min() >= 0 and frames.max() <= 1


@pytest.mark.multiscale
def test_multiscale_stops_at_the_pass_boundary_and_previews_it(engine: Engine, small: dict) -> None:
    params = {**small, **MULTISCALE}
    session = engine.create("ltx", params, variant="tiny")
    first = session.params.passes()[0]
    engine.run(session, until=first)
    assert session.doc.status == "paused" and session.doc.step_index == first
    assert any(c.step == first for c in session.doc.checkpoints)
    # The checkpoint at the boundary holds the finished first pass: LTXConditionPipeline's latents.
    comps = components(engine, session)
    p = session.params
    first_pass = reference_pipeline(comps)(**reference_call_kwargs(p), output_type="latent").frames
    preview, at = engine.preview_latents(session.id, step=first)
    assert at == first and torch.equal(preview, first_pass)
    # Decoded as a preview: the pipeline's decode at the reduced size, resized to the video's.
    frames = engine.decode(session, preview, step=first)
    small_video = reference_pipeline(comps)(**reference_call_kwargs(p), output_type="pt").frames[0]
    resized = torch.nn.functional.interpolate(
        small_video.float(), size=(p.height, p.width), mode="bicubic", antialias=True, align_corners=False
    ).clamp(0, 1)
    assert frames.shape == (p.num_frames, p.height, p.width, 3)
    assert torch.equal(frames, resized.permute(0, 2, 3, 1))
    # Resumed from the boundary (upsample + re-noise again), it ends where the recipe does.
    fresh = Engine(engine.store, device="cpu", cache=engine.cache)
    resumed = fresh.resume(session.id)
    assert resumed.doc.status == "completed"
    assert torch.equal(fresh.final_latents(resumed), reference_multiscale(comps, p))


@pytest.mark.multiscale
@pytest.mark.parametrize("until", [1, 6, 7, 8, 9])
def test_multiscale_resume_equals_uninterrupted(engine: Engine, small: dict, until: int) -> None:
    params = {**small, **MULTISCALE}
    full = engine.final_latents(run_ours(engine, params))
    partial = engine.create("ltx", params, variant="tiny")
    engine.run(partial, until=until)
    resumed = Engine(engine.store, device="cpu", cache=engine.cache).resume(partial.id)
    assert torch.equal(engine.final_latents(resumed), full), f"resume at step {until} differs"


@pytest.mark.multiscale
def test_multiscale_fork_at_the_boundary_changes_only_the_upsampling(engine: Engine, small: dict) -> None:
    parent = run_ours(engine, {**small, **MULTISCALE})
    child = engine.fork(parent.id, step=7, overrides={"adain_factor": 0.25})
    engine.run(child)
    ours = engine.final_latents(child)
    assert not torch.equal(ours, engine.final_latents(parent))
    assert torch.equal(ours, reference_multiscale(components(engine, parent), child.params))


@pytest.mark.multiscale
def test_upsampler_equals_ltx_latent_upsample_pipeline(engine: Engine, small: dict) -> None:
    # The first half of arc_next_pass alone: with a noise level of 0 it is the upsampler pipeline.
    from arc_ltx import plugin

    session = engine.create("ltx", {**small, **MULTISCALE, "pass2_timesteps": [909, 725]}, variant="tiny")
    comps = components(engine, session)
    latents = torch.randn(1, 8, 3, 8, 16, generator=torch.Generator().manual_seed(0))
    schedule = plugin.arc_schedule(comps, session.params, pass_index=1)
    schedule.sigmas = torch.zeros_like(schedule.sigmas)
    ours = plugin.arc_next_pass(comps, latents, 1, schedule, session.params, torch.Generator().manual_seed(1))
    theirs = reference_upsample_pipeline(comps)(latents=latents, adain_factor=1.0, output_type="latent").frames
    assert ours.shape == (1, 8, 3, 16, 32) and torch.equal(ours, theirs)


def test_timestep_conditioned_decode_is_deterministic(engine: Engine, small: dict) -> None:
    # The real 0.9.8 VAE decodes at a timestep with a little noise mixed in; the noise comes
    # from the seed, so a video decodes the same every time (and a new seed decodes anew).
    from dataclasses import replace

    from diffusers import AutoencoderKLLTXVideo

    from arc_ltx import plugin
    from arc_ltx.tiny import VAE_CONFIG

    session = engine.create("ltx", small, variant="tiny")
    base = components(engine, session)
    torch.manual_seed(0)
    vae = AutoencoderKLLTXVideo(**{**VAE_CONFIG, "timestep_conditioning": True}).eval()
    pipe = reference_pipeline(base)
    pipe.register_modules(vae=vae)
    comps = replace(base, pipe=pipe)
    latents = torch.randn(1, 8, 3, 16, 24, generator=torch.Generator().manual_seed(0))
    p = session.params
    first = plugin.arc_decode(comps, latents, p)
    assert first.shape == (9, 64, 96, 3) and torch.equal(first, plugin.arc_decode(comps, latents, p))
    # What LTXConditionPipeline does at decode, with the noise drawn from the seed.
    z = pipe._denormalize_latents(latents, vae.latents_mean, vae.latents_std, vae.config.scaling_factor)
    noise = torch.randn(z.shape, generator=torch.Generator().manual_seed(p.seed))
    scale = torch.tensor([p.decode_noise_scale])[:, None, None, None, None]
    z = (1 - scale) * z + scale * noise
    video = vae.decode(z, torch.tensor([p.decode_timestep]), return_dict=False)[0]
    expected = pipe.video_processor.postprocess_video(video, output_type="pt")[0].permute(0, 2, 3, 1)
    assert torch.equal(first, expected)
    other = plugin.arc_decode(comps, latents, p.model_copy(update={"seed": p.seed + 1}))
    assert not torch.equal(first, other)


@pytest.mark.multiscale
def test_masked_edit_of_a_multiscale_session_keeps_the_outside(engine: Engine, small: dict) -> None:
    from arc_fabric_core.engine.edit_mask import EditMask

    session = run_ours(engine, {**small, **MULTISCALE})
    before = engine.final_latents(session)
    last_pass = session.doc.passes[0]
    # The left half of the requested frame; the last pass runs at another size than the video's.
    p = session.params
    edit = engine.edit(
        session.id, step=last_pass, overrides={"seed": 8}, mask=EditMask(rect=(0, 0, p.width // 2, p.height))
    )
    engine.run(edit)
    after = engine.final_latents(edit)
    half = before.shape[-1] // 2
    assert torch.equal(after[..., half:], before[..., half:])
    assert not torch.equal(after[..., :half], before[..., :half])
