"""On a GPU (bf16 transformer): resume, fork and masked edit stay exact. Skipped without CUDA."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from arc_fabric_core.engine.edit_mask import EditMask
from arc_fabric_core.engine.facade import Engine
from arc_fabric_core.store.files import SessionStore
from arc_wan21.plugin import plugins_with_wan

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def test_resume_fork_and_masked_edit_are_exact_on_cuda(tmp_path: Path, small: dict) -> None:
    params = {**small, "steps": 6}
    engine = Engine(SessionStore(tmp_path), plugins=plugins_with_wan(), device="cuda")
    full = engine.create("wan21", params, variant="tiny")
    engine.run(full)
    expected = engine.final_latents(full)
    assert full.latents is not None and full.latents.device.type == "cuda"

    partial = engine.create("wan21", params, variant="tiny")
    engine.run(partial, until=3)
    fresh = Engine(engine.store, plugins=engine.plugins, device="cuda", cache=engine.cache)
    assert torch.equal(fresh.final_latents(fresh.resume(partial.id)), expected)

    fork = engine.run(engine.fork(full.id, step=2))
    assert torch.equal(engine.final_latents(fork), expected)

    edit = engine.edit(full.id, step=3, overrides={"prompt": "a city"}, mask=EditMask(rect=(0, 0, 16, 32)))
    after = engine.final_latents(engine.run(edit))
    assert torch.equal(after[..., 2:], expected[..., 2:]) and not torch.equal(after[..., :2], expected[..., :2])


def test_hybrid_is_exact_on_cuda(tmp_path: Path, small: dict) -> None:
    from arc_fabric_core.engine.hybrid import HybridSpec
    from arc_wan21.reference import reference_call_kwargs, reference_two_stage

    params = {**small, "steps": 6}
    engine = Engine(SessionStore(tmp_path), plugins=plugins_with_wan(), device="cuda")
    single = engine.final_latents(engine.run(engine.create("wan21", params, variant="tiny")))
    same = HybridSpec(stages=[{"variant": "tiny"}, {"variant": "tiny"}], boundary=0.5)
    assert torch.equal(engine.final_latents(engine.run(engine.create("wan21", params, hybrid=same))), single)

    two = HybridSpec(stages=[{"variant": "tiny"}, {"variant": "tiny-14b"}], boundary=0.9, unit="timestep")
    session = engine.run(engine.create("wan21", params, hybrid=two))
    small_model, large_model = (engine.cache.get(st.ref, engine.device, "auto") for st in session.stages)
    ref = reference_two_stage(small_model, large_model, boundary_ratio=0.9)
    theirs = ref(**reference_call_kwargs(params), output_type="latent").frames
    assert torch.equal(engine.final_latents(session), theirs.cpu())
