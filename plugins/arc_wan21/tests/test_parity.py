"""Our session equals diffusers' own WanPipeline on the same components and seed."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from arc_fabric_core.engine.facade import Engine
from arc_fabric_core.store.files import SessionStore
from arc_wan21.reference import reference_call_kwargs, reference_pipeline


def run_ours(tmp_path: Path, params: dict) -> tuple[Engine, object]:
    engine = Engine(SessionStore(tmp_path), device="cpu")
    session = engine.create("wan21", params, variant="tiny")
    engine.run(session)
    return engine, session


@pytest.mark.parametrize(
    "overrides",
    [{}, {"guidance": 1.0}, {"steps": 6, "shift": 3.0, "seed": 11}, {"num_frames": 13, "height": 48, "width": 64}],
    ids=["cfg", "no-cfg", "shift3", "odd-size"],
)
def test_final_latents_equal_wan_pipeline(tmp_path: Path, overrides: dict, small: dict) -> None:
    params = {**small, **overrides}
    engine, session = run_ours(tmp_path, params)
    ours = engine.final_latents(session)
    components = engine.cache.get(session.ref, engine.device, "auto")
    ref = reference_pipeline(components, shift=params.get("shift", 5.0))
    theirs = ref(**reference_call_kwargs(params), output_type="latent").frames
    assert ours.shape == theirs.shape
    # Bit for bit: the same modules, the same arithmetic, the same RNG draws.
    assert torch.equal(ours, theirs), (ours - theirs).abs().max()


def test_decode_equals_wan_pipeline(tmp_path: Path, small: dict) -> None:
    engine, session = run_ours(tmp_path, small)
    ours = engine.decode(session)
    ref = reference_pipeline(engine.cache.get(session.ref, engine.device, "auto"))
    frames = ref(**reference_call_kwargs(small), output_type="pt").frames[0]  # (F, C, H, W)
    assert torch.equal(ours, frames.permute(0, 2, 3, 1).float())
