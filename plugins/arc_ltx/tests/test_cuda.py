"""On a GPU (bf16 transformer and text encoder, fp32 VAE and upsampler): one pass and
multi-scale stay equal to diffusers' pipelines, and a resume across the pass boundary is
exact. Skipped without CUDA."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from arc_fabric_core.engine.facade import Engine
from arc_fabric_core.store.files import SessionStore
from arc_ltx.plugin import plugins_with_ltx
from arc_ltx.reference import reference_call_kwargs, reference_multiscale, reference_pipeline

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def test_single_pass_equals_ltx_condition_pipeline_on_cuda(tmp_path: Path, small: dict) -> None:
    engine = Engine(SessionStore(tmp_path), plugins=plugins_with_ltx(), device="cuda")
    session = engine.run(engine.create("ltx", {**small, "guidance": 3.0, "guidance_rescale": 0.5}, variant="tiny"))
    components = engine.cache.get(session.ref, engine.device, "auto")
    assert components.transformer.dtype == torch.bfloat16 and components.pipe.vae.dtype == torch.float32
    theirs = reference_pipeline(components)(**reference_call_kwargs(session.params), output_type="latent").frames
    assert torch.equal(engine.final_latents(session), theirs.cpu())
    frames = engine.decode(session)
    assert frames.shape == (9, 64, 96, 3) and torch.isfinite(frames).all()


@pytest.mark.multiscale
def test_multiscale_equals_the_recipe_and_resumes_exactly_on_cuda(tmp_path: Path, small: dict) -> None:
    params = {**small, "multiscale": True, "timestep_schedule": "distilled", "timesteps": None}
    engine = Engine(SessionStore(tmp_path), plugins=plugins_with_ltx(), device="cuda")
    full = engine.run(engine.create("ltx", params, variant="tiny"))
    components = engine.cache.get(full.ref, engine.device, "auto")
    expected = engine.final_latents(full)
    assert torch.equal(expected, reference_multiscale(components, full.params).cpu())
    partial = engine.create("ltx", params, variant="tiny")
    engine.run(partial, until=7)
    fresh = Engine(engine.store, plugins=engine.plugins, device="cuda", cache=engine.cache)
    assert torch.equal(fresh.final_latents(fresh.resume(partial.id)), expected)
    assert engine.decode(full).shape == (9, 64, 96, 3)
