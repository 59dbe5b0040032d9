"""Our session equals diffusers' own WanPipeline on the same components and seed."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from diffusers import WanPipeline

from arc_fabric_core.engine import Engine
from arc_fabric_core.store import SessionStore


def reference(components, params: dict, shift: float = 5.0) -> torch.Tensor:
    pipe = components.pipe
    scheduler = type(pipe.scheduler).from_config(pipe.scheduler.config, flow_shift=shift)
    ref = WanPipeline(
        tokenizer=pipe.tokenizer,
        text_encoder=pipe.text_encoder,
        vae=pipe.vae,
        transformer=pipe.transformer,
        scheduler=scheduler,
    )
    ref.set_progress_bar_config(disable=True)
    return ref(
        prompt=params["prompt"],
        negative_prompt=params["negative_prompt"],
        num_frames=params["num_frames"],
        height=params["height"],
        width=params["width"],
        num_inference_steps=params["steps"],
        guidance_scale=params["guidance"],
        generator=torch.Generator("cpu").manual_seed(params["seed"]),
        output_type="latent",
    ).frames


@pytest.mark.parametrize(
    "overrides",
    [{}, {"guidance": 1.0}, {"steps": 6, "shift": 3.0, "seed": 11}, {"num_frames": 13, "height": 48, "width": 64}],
    ids=["cfg", "no-cfg", "shift3", "odd-size"],
)
def test_final_latents_equal_wan_pipeline(tmp_path: Path, overrides: dict, small: dict) -> None:
    params = {**small, **overrides}
    engine = Engine(SessionStore(tmp_path), device="cpu")
    session = engine.create("wan21", params, variant="tiny")
    engine.run(session)
    ours = engine.final_latents(session)
    theirs = reference(engine.pool.get(session.ref, engine.device, "auto"), params, shift=params.get("shift", 5.0))
    assert ours.shape == theirs.shape
    # Bit for bit: the same modules, the same arithmetic, the same RNG draws.
    assert torch.equal(ours, theirs), (ours - theirs).abs().max()


def test_decode_equals_wan_pipeline(tmp_path: Path, small: dict) -> None:
    engine = Engine(SessionStore(tmp_path), device="cpu")
    session = engine.create("wan21", small, variant="tiny")
    engine.run(session)
    ours = engine.decode(session)
    pipe = engine.pool.get(session.ref, engine.device, "auto").pipe
    ref = WanPipeline(
        **{k: getattr(pipe, k) for k in ("tokenizer", "text_encoder", "vae", "transformer")},
        scheduler=type(pipe.scheduler).from_config(pipe.scheduler.config, flow_shift=5.0),
    )
    ref.set_progress_bar_config(disable=True)
    frames = ref(
        prompt=small["prompt"],
        negative_prompt=small["negative_prompt"],
        num_frames=small["num_frames"],
        height=small["height"],
        width=small["width"],
        num_inference_steps=small["steps"],
        guidance_scale=small["guidance"],
        generator=torch.Generator("cpu").manual_seed(small["seed"]),
        output_type="pt",
    ).frames[0]  # (F, C, H, W)
    assert torch.equal(ours, frames.permute(0, 2, 3, 1).float())
