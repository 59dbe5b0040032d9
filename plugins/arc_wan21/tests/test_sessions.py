"""Fork and edit on Wan: UniPC's history survives a fork; an edit equals diffusers' video-to-video."""

from __future__ import annotations

from pathlib import Path

import torch

from arc_fabric_core.engine.edit_mask import EditMask
from arc_fabric_core.engine.facade import Engine
from arc_fabric_core.store.files import SessionStore
from arc_wan21.reference import reference_video2video


def finished(tmp_path: Path, params: dict) -> tuple[Engine, str]:
    engine = Engine(SessionStore(tmp_path), device="cpu")
    session = engine.create("wan21", params, variant="tiny")
    engine.run(session)
    return engine, session.id


def test_fork_without_overrides_equals_its_parent_with_unipc(tmp_path: Path, small: dict) -> None:
    engine, parent = finished(tmp_path, {**small, "steps": 6})
    child = engine.fork(parent, step=3)  # UniPC's solver history rides along in the shared checkpoint
    engine.run(child)
    assert torch.equal(engine.final_latents(child.id), engine.final_latents(parent))


def test_edit_equals_wan_video_to_video_pipeline(tmp_path: Path, small: dict) -> None:
    params = {**small, "steps": 6}
    engine, parent = finished(tmp_path, params)
    edit = engine.edit(parent, strength=0.5, overrides={"prompt": "a blue fox", "seed": 3})
    engine.run(edit)
    ours = engine.final_latents(edit.id)

    ref = reference_video2video(engine.cache.get(edit.ref, engine.device, "auto"))
    x0 = engine.final_latents(parent)
    noise = torch.randn(x0.shape, generator=torch.Generator("cpu").manual_seed(3))
    ref.scheduler.set_timesteps(6)
    # diffusers' own forward process at the edit's first timestep (steps 3..5 of 6).
    noisy = ref.scheduler.add_noise(x0, noise, ref.scheduler.timesteps[3:4])
    theirs = ref(
        prompt="a blue fox",
        negative_prompt=params["negative_prompt"],
        height=params["height"],
        width=params["width"],
        num_inference_steps=6,
        guidance_scale=params["guidance"],
        strength=0.5,
        latents=noisy,
        output_type="latent",
    ).frames
    assert torch.equal(ours, theirs), (ours - theirs).abs().max()


def test_masked_edit_on_wan_keeps_the_outside(tmp_path: Path, small: dict) -> None:
    engine, parent = finished(tmp_path, small)  # 9 frames 32x32: latents 3 x 4 x 4
    edit = engine.edit(
        parent, step=2, overrides={"prompt": "a city"}, mask=EditMask(rect=(0, 0, 16, 32), frames=(5, 9))
    )
    engine.run(edit)
    before, after = engine.final_latents(parent), engine.final_latents(edit.id)
    inside = torch.zeros_like(before, dtype=torch.bool)
    inside[:, :, 2:, :, :2] = True  # pixel frames 5..8 are latent frame 2; columns 0..15 are latent 0..1
    assert torch.equal(after[~inside], before[~inside])
    assert not torch.equal(after[inside], before[inside])
