"""DreamDojo against its references, on the tiny components.

- With diffusers' conditioning convention and no actions, a one-chunk session equals
  ``Cosmos2_5_PredictBasePipeline`` in video-to-world mode (image conditioning, the same
  prompt embedding, the same UniPC sigmas) bit for bit.
- The authors' convention with actions equals, bit for bit, the authors' formulas written out here:
  their loop (noise from ``RandomState(chunk start)``, the conditioning frame replaced in
  x_t and its velocity by ``noise - x0``, every frame at ``int(sigma * 1000) * 0.001``,
  the last frame of a chunk re-encoded from 8 bits for the next), and their action
  injection (``norm(sinusoid + a_D)``, ``t_embedder(sinusoid) + a_3D``) applied to
  diffusers' blocks by hand.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from arc_dreamdojo import plugin
from PIL import Image

from arc_fabric_core.engine.facade import Engine
from arc_fabric_core.kit.vae import normalize
from arc_fabric_core.store.files import SessionStore

H, W = 32, 48


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    return Engine(SessionStore(tmp_path / "sessions"), device="cpu")


def first_frame(seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return plugin.quantize(torch.rand(3, H, W, generator=g))


def gr1_actions(chunks: int, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    actions = torch.zeros(12 * chunks, 384)
    actions[:, :29] = torch.rand(12 * chunks, 29, generator=g) * 2 - 1
    return actions


class _NoSafetyChecker:
    """The pipeline insists on a checker object; the tiny frames need none."""

    def to(self, *_: object) -> _NoSafetyChecker:
        return self

    def check_text_safety(self, _: str) -> bool:
        return True


@pytest.mark.parametrize("guidance", [0.0, 3.0])
def test_the_no_action_path_equals_diffusers_cosmos_2_5_pipeline(engine: Engine, guidance: float) -> None:
    from diffusers import Cosmos2_5_PredictBasePipeline

    image = first_frame()
    params = {"num_frames": 13, "height": H, "width": W, "steps": 5, "conditioning": "diffusers", "guidance": guidance}
    session = engine.create("dreamdojo", params, variant="tiny", inputs={"image": image})
    engine.run(session)
    ours = engine.final_latents(session)

    parts = engine.load(session.ref, "cpu")
    pipe = Cosmos2_5_PredictBasePipeline(
        text_encoder=None,
        tokenizer=None,
        transformer=parts.net.transformer,
        vae=parts.vae,
        scheduler=plugin.new_scheduler(5.0, 5),
        safety_checker=_NoSafetyChecker(),
    )
    pil = Image.fromarray((image.permute(1, 2, 0) * 255).round().to(torch.uint8).numpy())
    noise = plugin.chunk_noise((1, 16, 4, H // 8, W // 8), 0, 0)
    # The pipeline runs guidance only above 1, as cond + g (cond - uncond): ours at 3 is the same formula.
    out = pipe(
        image=pil,
        prompt_embeds=parts.text,
        negative_prompt_embeds=torch.zeros_like(parts.text),
        height=H,
        width=W,
        num_frames=13,
        num_inference_steps=5,
        guidance_scale=guidance,
        latents=noise.clone(),
        output_type="latent",
        num_latent_conditional_frames=1,
    ).frames
    assert torch.equal(ours, out), (ours - out).abs().max()


def reference_net(net: torch.nn.Module, x, timestep, text, mask, actions) -> torch.Tensor:
    """The authors' forward on diffusers' modules, action injection written out."""
    tr = net.transformer
    b, _, t, h, w = x.shape
    hidden = torch.cat([x, mask], dim=1)
    hidden = torch.cat([hidden, torch.zeros(b, 1, t, h, w)], dim=1)  # the padding mask, zero everywhere
    rope = tr.rope(hidden)
    hidden = tr.patch_embed(hidden).flatten(1, 3)
    grouped = actions.reshape(b, actions.shape[1] // 4, 4 * actions.shape[2])
    a_d = torch.cat([torch.zeros(b, 1, tr.time_embed.norm.weight.shape[0]), net.action_embedder_B_D(grouped)], 1)
    a_3d = torch.cat([torch.zeros(b, 1, 3 * a_d.shape[-1]), net.action_embedder_B_3D(grouped)], 1)
    sinusoid = tr.time_embed.time_proj(timestep.flatten()).view(b, t, -1)
    t_emb = tr.time_embed.norm(sinusoid + a_d)
    adaln = tr.time_embed.t_embedder(sinusoid) + a_3d
    tokens = (h // 2) * (w // 2)
    t_emb, adaln = (v.repeat_interleave(tokens, dim=1) for v in (t_emb, adaln))
    context = tr.crossattn_proj(text)
    for block in tr.transformer_blocks:
        hidden = block(hidden, context, t_emb, adaln, rope, None, None, None)
    hidden = tr.proj_out(tr.norm_out(hidden, t_emb, adaln))
    hidden = hidden.unflatten(2, (2, 2, 1, -1)).unflatten(1, (t, h // 2, w // 2))
    return hidden.permute(0, 7, 1, 6, 2, 4, 3, 5).flatten(6, 7).flatten(4, 5).flatten(2, 3)


def authors_rollout(parts, image: torch.Tensor, actions: torch.Tensor, chunks: int, steps: int) -> torch.Tensor:
    """Their chunk loop, with the net written out above."""
    vae, out = parts.vae, []
    frame = image
    for c in range(chunks):
        pixels = (frame * 2 - 1).view(1, 3, 1, H, W)
        cond = normalize(vae.encode(pixels).latent_dist.mode(), vae)
        noise = torch.from_numpy(np.random.RandomState(12 * c).standard_normal((1, 16, 4, H // 8, W // 8)))
        noise = noise.to(torch.float32)
        mask = torch.zeros(1, 1, 4, H // 8, W // 8)
        mask[:, :, 0] = 1
        gt = torch.zeros_like(noise)
        gt[:, :, :1] = cond
        scheduler = plugin.new_scheduler(5.0, steps)
        x = noise
        for t in scheduler.timesteps:
            x_in = gt * mask + x * (1 - mask)
            timestep = torch.full((1, 1, 4, 1, 1), int(t) * 0.001)
            v = reference_net(parts.net, x_in, timestep, parts.text, mask, actions[None, 12 * c : 12 * c + 12])
            v = (noise - gt) * mask + v * (1 - mask)
            x = scheduler.step(v, t, x, return_dict=False)[0]
        out.append(x)
        video = vae.decode(x / normalize_scale(vae) + normalize_mean(vae), return_dict=False)[0]
        last = ((video[0, :, -1] + 1) / 2).clamp(0, 1)
        frame = (last * 255).to(torch.uint8).to(torch.float32) / 255
    return torch.cat(out, dim=2)


def normalize_scale(vae) -> torch.Tensor:
    return 1.0 / torch.tensor(vae.config.latents_std).view(1, 16, 1, 1, 1)


def normalize_mean(vae) -> torch.Tensor:
    return torch.tensor(vae.config.latents_mean).view(1, 16, 1, 1, 1)


def test_the_authors_convention_and_action_injection_equal_their_formulas(engine: Engine) -> None:
    image, actions = first_frame(), gr1_actions(2)
    params = {"num_frames": 25, "height": H, "width": W, "steps": 4}
    session = engine.create("dreamdojo", params, variant="tiny", inputs={"image": image, "actions": actions})
    engine.run(session)
    ours = engine.final_latents(session)
    parts = engine.load(session.ref, "cpu")
    with torch.no_grad():
        theirs = authors_rollout(parts, image, actions, chunks=2, steps=4)
    # The same operations in the same order: bit for bit.
    assert torch.equal(ours, theirs), (ours - theirs).abs().max()


def test_actions_steer_only_the_chunks_they_belong_to(engine: Engine) -> None:
    image, actions = first_frame(), gr1_actions(2)
    params = {"num_frames": 25, "height": H, "width": W, "steps": 3}
    runs = []
    for acts in (actions, torch.cat([actions[:12], -actions[12:]])):
        session = engine.create("dreamdojo", params, variant="tiny", inputs={"image": image, "actions": acts})
        engine.run(session)
        runs.append(engine.final_latents(session))
    assert torch.equal(runs[0][:, :, :4], runs[1][:, :, :4])
    assert not torch.allclose(runs[0][:, :, 5:8], runs[1][:, :, 5:8], atol=1e-4)


@pytest.mark.parametrize(("guidance", "calls"), [(0.0, 1), (1.0, 2)])
def test_guidance_0_runs_no_unconditional_pass(engine: Engine, guidance: float, calls: int) -> None:
    params = {"num_frames": 13, "height": H, "width": W, "steps": 2, "guidance": guidance}
    session = engine.create(
        "dreamdojo", params, variant="tiny", inputs={"image": first_frame(), "actions": gr1_actions(1)}
    )
    net = engine.load(session.ref, "cpu").net
    seen: list[int] = []
    handle = net.register_forward_hook(lambda *_: seen.append(1))
    try:
        engine.run(session)
    finally:
        handle.remove()
    assert len(seen) == 2 * calls
