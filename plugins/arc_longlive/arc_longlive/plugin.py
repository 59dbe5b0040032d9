"""The LongLive plugin: a video made a block of latent frames at a time.

The engine sees a session of ``blocks`` passes of ``steps`` steps. At each step the
plugin runs the causal transformer on the current block only, attending to the KV cache
of the blocks before it; the block's schedule turns the model's flow into the clean
estimate and re-noises it to the next level (LongLive's loop), writing only the block's
frames into the session's latents.

The KV cache is the session's model state (``StepContext.state``), never checkpointed:
at the first step of a block the plugin brings it up to date from the clean latents —
normally one pass (the block just finished, at t=0, writing its keys and values, as
LongLive does after each block), after a resume or in a fork every earlier block in
order, with the prompt switches where they were. The cache is a deterministic function
of the clean latents, so a resumed session equals an uninterrupted one bit for bit.

Every block draws its noise (the first, and the re-noising between steps) from a
generator of its own, seeded from the session's seed and the block: a block's noise does
not depend on how many blocks there are, so extending a video by N blocks gives what
generating the longer video at once gives.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from arc_fabric_core.contract.errors import InputError
from arc_fabric_core.contract.hookspecs import hookimpl
from arc_fabric_core.contract.models import ModelRef, ModelSpec
from arc_fabric_core.contract.schedule import DECODED_FRAMES, Schedule, StepContext
from arc_fabric_core.kit.activations import kv_cache_bytes, transformer_call_bytes, wan_vae_decode_bytes
from arc_fabric_core.kit.kv_cache import KVCache, WindowPolicy
from arc_fabric_core.kit.pipeline_folder import PipelineComponents, load_pipeline
from arc_fabric_core.kit.vae import decode_frames
from arc_longlive.causal import CausalWan
from arc_longlive.spec import (
    BLOCK_FRAMES,
    LONGLIVE,
    ROPE_POSITIONS,
    TINY_ROPE_POSITIONS,
    LongLiveParams,
    block_start,
    most_frames,
)
from arc_longlive.streaming import StreamingDecoder

KV_STATE = "longlive.kv"
WRITTEN_STATE = "longlive.written"  # blocks whose clean pass is in the cache
CROSS_STATE = "longlive.cross"  # prompt index -> its cross-attention cache
DECODER_STATE = "longlive.decoder"  # the streaming decoder (the VAE's causal cache)


@dataclass
class LongLiveComponents(PipelineComponents):
    """A loaded LongLive: ``pipe`` is a ``diffusers.WanPipeline`` (text encoder, VAE,
    transformer), ``causal`` drives its transformer block by block."""

    causal: CausalWan


@hookimpl
def arc_register_models(register: Callable[[ModelSpec], None]) -> None:
    register(LONGLIVE)


@hookimpl
def arc_load(model: ModelRef, device: torch.device, dtype: str) -> LongLiveComponents:
    from diffusers import WanPipeline

    from arc_longlive.tiny import ensure_tiny_checkpoint

    def merge(pipe: Any) -> None:
        """LongLive's generator and LoRA onto the Wan transformer (on the CPU, before it moves)."""
        from arc_longlive.weights import apply_longlive_weights

        apply_longlive_weights(pipe.transformer, model.weights)

    prepare = merge if model.weights is not None else None
    pipe = load_pipeline(WanPipeline, model, device, dtype, tiny_folder=ensure_tiny_checkpoint, prepare=prepare)
    return LongLiveComponents(pipe=pipe, causal=CausalWan(pipe.transformer), device=device)


@hookimpl
def arc_encode(components: LongLiveComponents, params: LongLiveParams) -> dict[str, torch.Tensor]:
    pipe = components.pipe
    out = {}
    for i, prompt in enumerate(params.all_prompts()):
        embeds, _ = pipe.encode_prompt(
            prompt=prompt, do_classifier_free_guidance=False, num_videos_per_prompt=1, device=components.device
        )
        out[f"prompt_embeds.{i}"] = embeds.to(pipe.transformer.dtype)
    return out


# Latent frames the rotary table of each variant covers (Wan's 1024; the tiny one's 32).
MAX_LATENT_FRAMES = {"1.3b": ROPE_POSITIONS, "tiny": TINY_ROPE_POSITIONS}


@hookimpl
def arc_passes(model: ModelRef, params: LongLiveParams) -> list[int]:
    limit = MAX_LATENT_FRAMES.get(model.variant.name, ROPE_POSITIONS)
    if params.blocks * BLOCK_FRAMES > limit:
        most = most_frames(limit)
        raise InputError(
            "num_frames",
            f"{model.label} places at most {limit} latent frames (its rotary table): at most {most} frames, "
            f"got {params.num_frames}",
        )
    return [params.steps] * params.blocks


@hookimpl
def arc_extend_params(params: LongLiveParams, blocks: int, prompt: str | None) -> dict[str, Any]:
    """``blocks`` more blocks; a new prompt takes over at the first of them."""
    out: dict[str, Any] = {"num_frames": params.num_frames + 4 * BLOCK_FRAMES * blocks}
    if prompt is not None:
        out["prompts"] = [*params.prompts, prompt]
        out["switch_frames"] = [*params.switch_frames, params.blocks * BLOCK_FRAMES]
    return out


class BlockLevels:
    """The "scheduler" of a block: LongLive's levels have no state beyond their config
    (the checkpoint records the config; there are no internals to restore)."""

    def __init__(self, shift: float, steps: int) -> None:
        self.config = {"kind": "longlive-block-levels", "shift": shift, "steps": steps}


@dataclass
class BlockSchedule(Schedule):
    """One block's steps: predict the clean block from the flow, re-noise it to the next
    level with the block's own noise; only the block's frames change."""

    block: int = 0
    seed: int = 0

    def step(
        self, model_output: torch.Tensor, index: int, latents: torch.Tensor, generator: torch.Generator
    ) -> torch.Tensor:
        assert self.sigmas is not None
        start, end = self.block * BLOCK_FRAMES, (self.block + 1) * BLOCK_FRAMES
        x = latents[:, :, start:end]
        x0 = x - float(self.sigmas[index]) * model_output.to(x.dtype)
        if index + 1 < len(self):
            sigma = float(self.sigmas[index + 1])
            noise = block_noise(x0.shape, self.seed, self.block, index + 1).to(x0.device)
            x0 = (1 - sigma) * x0 + sigma * noise
        out = latents.clone()
        out[:, :, start:end] = x0
        return out


def block_noise(shape: torch.Size | tuple[int, ...], seed: int, block: int, draw: int) -> torch.Tensor:
    """The noise of a block: draw 0 starts it, draw i re-noises before step i. Seeded per
    (seed, block, draw) so that no block's noise depends on another's. Taken modulo 2^64:
    a generator takes a uint64, and every seed up to 2^64 - 1 is allowed (smaller ones,
    whose mix fits, draw what they always drew)."""
    generator = torch.Generator("cpu").manual_seed(((seed * 1_000_003 + block) * 16 + draw) % 2**64)
    return torch.randn(tuple(shape), generator=generator, dtype=torch.float32)


def levels(params: LongLiveParams) -> list[float]:
    """LongLive's denoising levels: [1000, 750, 500, 250] for 4 steps, warped through the
    shift (sigma' = shift·s / (1 + (shift - 1)·s)), then 0."""
    plain = [1.0 - i / params.steps for i in range(params.steps)]
    return [params.shift * s / (1 + (params.shift - 1) * s) for s in plain] + [0.0]


@hookimpl
def arc_schedule(params: LongLiveParams, pass_index: int) -> Schedule:
    sigmas = torch.tensor(levels(params), dtype=torch.float64)
    return BlockSchedule(
        timesteps=(sigmas[:-1] * 1000).float(),
        scheduler=BlockLevels(params.shift, params.steps),
        sigmas=sigmas.float(),
        block=pass_index,
        seed=params.seed,
    )


@hookimpl
def arc_next_pass(latents: torch.Tensor) -> torch.Tensor:
    return latents  # the next block's frames hold its first noise already


@hookimpl
def arc_prepare_latents(components: LongLiveComponents, params: LongLiveParams) -> torch.Tensor:
    height, width = params.height // 8, params.width // 8
    blocks = [block_noise((1, 16, BLOCK_FRAMES, height, width), params.seed, b, 0) for b in range(params.blocks)]
    return torch.cat(blocks, dim=2).to(components.device)


@hookimpl
def arc_rewind_params(params: LongLiveParams, block: int, prompt: str | None) -> dict[str, Any]:
    """The switches before ``block`` stay (those blocks keep their prompts); a new prompt
    takes over at ``block``; later switches go (the blocks after are made again)."""
    start = block * BLOCK_FRAMES
    kept = [(p, f) for p, f in zip(params.prompts, params.switch_frames, strict=True) if block_start(f) < start]
    if prompt is not None and start > 0:
        kept.append((prompt, start))
    out: dict[str, Any] = {"prompts": [p for p, _ in kept], "switch_frames": [f for _, f in kept]}
    if prompt is not None and start == 0:
        out["prompt"] = prompt  # from the first block: the first prompt itself
    return out


def _policy(params: LongLiveParams) -> WindowPolicy:
    return WindowPolicy(BLOCK_FRAMES, params.window_frames, params.sink_frames)


def _prompt(conditioning: dict[str, torch.Tensor], params: LongLiveParams, block: int) -> torch.Tensor:
    return conditioning[f"prompt_embeds.{params.prompt_index(block)}"]


class CrossCaches(dict):
    """Prompt index -> that prompt's cross-attention keys and values by layer."""

    def park(self) -> None:
        self.clear()  # one projection per layer and prompt remakes them, exactly


def _cross(state: dict[str, Any], params: LongLiveParams, block: int) -> dict[int, Any]:
    """The cross-attention cache of the prompt ``block`` runs under (one per prompt)."""
    return state.setdefault(CROSS_STATE, CrossCaches()).setdefault(params.prompt_index(block), {})


def catch_up(
    components: LongLiveComponents,
    state: dict[str, Any],
    latents: torch.Tensor,
    conditioning: dict[str, torch.Tensor],
    params: LongLiveParams,
    block: int,
) -> KVCache:
    """The session's KV cache holding every block before ``block`` (clean passes at t=0,
    and the re-caching after each prompt switch), made from the clean latents."""
    causal = components.causal
    cache = state.get(KV_STATE)
    if cache is None:
        cache = causal.new_cache(_policy(params), latents.shape[3], latents.shape[4])
        state[KV_STATE], state[WRITTEN_STATE] = cache, 0
    cache.to(latents.device)
    zero = torch.tensor(0.0)
    while state[WRITTEN_STATE] < block:
        k = state[WRITTEN_STATE]
        start = k * BLOCK_FRAMES
        clean = latents[:, :, start : start + BLOCK_FRAMES]
        causal(clean, zero, _prompt(conditioning, params, k), start, cache, True, _cross(state, params, k))
        state[WRITTEN_STATE] = k + 1
        nxt = k + 1
        if nxt < params.blocks and params.prompt_index(nxt) != params.prompt_index(k):
            # A new prompt from the next block on: LongLive re-caches the recent clean frames
            # (not the sink) under it, in one pass seeing the sink and each other.
            switch = nxt * BLOCK_FRAMES
            policy = cache.policy
            first = policy.sink_frames
            if policy.window_frames != -1:
                first = max(first, switch - (policy.window_frames - policy.sink_frames))
            if first < switch:
                recent = latents[:, :, first:switch]
                causal(recent, zero, _prompt(conditioning, params, nxt), first, cache, True, _cross(state, params, nxt))
    return cache


@hookimpl
def arc_denoise_step(
    components: LongLiveComponents,
    latents: torch.Tensor,
    step: StepContext,
    conditioning: dict[str, torch.Tensor],
    params: LongLiveParams,
) -> torch.Tensor:
    block = step.pass_index
    cache = catch_up(components, step.state, latents, conditioning, params, block)
    start = block * BLOCK_FRAMES
    x = latents[:, :, start : start + BLOCK_FRAMES]
    prompt, cross = _prompt(conditioning, params, block), _cross(step.state, params, block)
    flow = components.causal(x, step.timestep, prompt, start, cache, cross=cross)
    if params.stream and step.index == step.total - 1:
        # The block's last step: its clean frames are x - sigma * flow (what the block's
        # schedule makes of this output), decoded now so they stream out with the step.
        assert step.sigma is not None
        clean = x - step.sigma * flow.to(x.dtype)
        step.state[DECODED_FRAMES] = _decoder(components, step.state, latents, start).decode(clean)
    return flow


class _Decoder(StreamingDecoder):
    def park(self) -> None:
        # The VAE's causal cache is big at full size: in CPU memory while the session waits,
        # kept so that an extension of a live session goes on decoding where it stopped.
        self.to("cpu")


def _decoder(components: LongLiveComponents, state: dict[str, Any], latents: torch.Tensor, start: int) -> Any:
    """The session's streaming decoder, having decoded every latent frame before ``start``
    (after a resume, a fork or a pause it decodes them again first: exact, if not free)."""
    decoder = state.get(DECODER_STATE)
    if decoder is None or decoder.frames_in != start:
        decoder = state[DECODER_STATE] = _Decoder(components.pipe.vae)
        for first in range(0, start, BLOCK_FRAMES):
            decoder.decode(latents[:, :, first : first + BLOCK_FRAMES])
    return decoder


@hookimpl
def arc_activation_bytes(model: ModelRef, params: LongLiveParams) -> int:
    """Memory a session needs beside the weights: its KV cache (every layer's keys and
    values of the frames a block sees: 3.45 GB in bf16 at 480x832 with the 12-frame window),
    one block's activations, and the VAE decode at the end (Wan's calibration: 8.8 GiB at
    480x832, its causal chunks at full resolution, plus the decoded video)."""
    layers, dim, vae_width, item = (2, 24, 3, 4) if model.variant.tiny else (30, 1536, 96, 2)
    tokens = (params.height // 16) * (params.width // 16)
    total = params.blocks * BLOCK_FRAMES
    seen = total if params.window_frames == -1 else min(total, params.window_frames)
    kv = kv_cache_bytes(layers, seen, tokens, dim, item)
    block = transformer_call_bytes(BLOCK_FRAMES * tokens, dim, ffn=8 * dim, item_bytes=item)  # FFN taken as 8 x dim
    vae = wan_vae_decode_bytes(params.num_frames, params.height, params.width, vae_width)
    return kv + max(block, vae)


@hookimpl
def arc_decode(components: LongLiveComponents, latents: torch.Tensor) -> torch.Tensor:
    return decode_frames(components.pipe.vae, components.pipe.video_processor, latents)


def switch_blocks(params: LongLiveParams) -> list[int]:
    """The blocks where a new prompt takes over."""
    return [block_start(f) // BLOCK_FRAMES for f in params.switch_frames]
