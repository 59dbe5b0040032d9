"""Wan's transformer run a block of latent frames at a time, with a KV cache.

LongLive's generator is Wan 2.1 made block-causal: a block of frames attends to itself
(both ways), to the sink frames and to a window of recent frames, through the keys and
values kept from earlier blocks. Everything but the self-attention is diffusers' own
``WanTransformer3DModel``: we install a processor on each block's ``attn1`` that ropes
the block's queries and keys at their absolute frame positions and attends over the
cache, and call the model's own modules around it (patch embedding, per-frame time
conditioning, blocks, output head).

``reference_forward`` is the same model without any cache: one pass over every frame so
far with a mask that lets each block see exactly what the cached run lets it see. The
cached run must equal it (tests), and the benchmarks time one against the other.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import torch

from arc_fabric_core.contract.errors import InputError
from arc_fabric_core.kit.kv_cache import KVCache, WindowPolicy


@dataclass
class _Call:
    """What the self-attention processors need to know about the forward running now."""

    start: int  # first latent frame of the input
    cache: KVCache | None
    write: bool  # store the input's keys and values (the clean pass)
    mask: torch.Tensor | None = None  # the reference's visibility mask (no cache)
    # The prompt's cross-attention keys and values by layer (LongLive's cross-attention
    # cache): made at the first call with a prompt, reused while it lasts.
    cross: dict[int, tuple[torch.Tensor, torch.Tensor]] | None = None


def attention(
    query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, mask: torch.Tensor | None, backend: Any
) -> torch.Tensor:
    """Attention of [B, S, heads, dim] tensors through diffusers' dispatcher, so that
    the backend chosen for the model (``set_attention_backend``, which sets each
    processor's ``_attention_backend``, or diffusers' active one) runs here too. The
    native backend is torch SDPA on the same permuted views, bit for bit what calling it
    directly gives. A mask ([Sq, Sk], the reference's) goes in as [1, 1, Sq, Sk]: a 2-D
    mask whose first size happens to equal the batch would be read as per-sample."""
    from diffusers.models.attention_dispatch import dispatch_attention_fn

    if mask is not None and mask.ndim == 2:
        mask = mask[None, None]
    return dispatch_attention_fn(query, key, value, attn_mask=mask, backend=backend)


class _SelfAttention:
    """``attn1``'s processor: rotary at absolute positions, then attention over the
    visible cached frames and the block itself."""

    _attention_backend = None  # set by the model's set_attention_backend
    _parallel_config = None

    def __init__(self, owner: CausalWan, layer: int) -> None:
        self.owner, self.layer = owner, layer

    def __call__(
        self,
        attn: Any,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        rotary_emb: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        call = self.owner.current()
        if getattr(attn, "fused_projections", False):
            query, key, value = attn.to_qkv(hidden_states).chunk(3, dim=-1)
        else:
            query, key, value = attn.to_q(hidden_states), attn.to_k(hidden_states), attn.to_v(hidden_states)
        query = attn.norm_q(query).unflatten(2, (attn.heads, -1))
        key = attn.norm_k(key).unflatten(2, (attn.heads, -1))
        value = value.unflatten(2, (attn.heads, -1))
        assert rotary_emb is not None
        query, key = rotate(query, *rotary_emb), rotate(key, *rotary_emb)
        mask = call.mask
        if call.cache is not None:
            keys, values = call.cache.attend(self.layer, call.start, key, value)
            if call.write:
                call.cache.write(self.layer, call.start, key, value)
        else:
            keys, values = key, value
        out = attention(query, keys, values, mask, self._attention_backend)
        out = out.flatten(2, 3).type_as(query)
        return attn.to_out[1](attn.to_out[0](out))


class _CrossAttention:
    """``attn2``'s processor: attention to the prompt, its keys and values cached."""

    _attention_backend = None  # set by the model's set_attention_backend
    _parallel_config = None

    def __init__(self, owner: CausalWan, layer: int) -> None:
        self.owner, self.layer = owner, layer

    def __call__(
        self,
        attn: Any,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        rotary_emb: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        assert encoder_hidden_states is not None
        store = self.owner.current().cross
        kv = store.get(self.layer) if store is not None else None
        if kv is None:
            key = attn.norm_k(attn.to_k(encoder_hidden_states)).unflatten(2, (attn.heads, -1))
            value = attn.to_v(encoder_hidden_states).unflatten(2, (attn.heads, -1))
            kv = (key, value)
            if store is not None:
                store[self.layer] = kv
        query = attn.norm_q(attn.to_q(hidden_states)).unflatten(2, (attn.heads, -1))
        out = attention(query, kv[0], kv[1], None, self._attention_backend)
        out = out.flatten(2, 3).type_as(query)
        return attn.to_out[1](attn.to_out[0](out))


def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Wan's rotary embedding on interleaved pairs (diffusers' arithmetic)."""
    x1, x2 = x.unflatten(-1, (-1, 2)).unbind(-1)
    cos, sin = cos[..., 0::2], sin[..., 1::2]
    out = torch.empty_like(x)
    out[..., 0::2] = x1 * cos - x2 * sin
    out[..., 1::2] = x1 * sin + x2 * cos
    return out.type_as(x)


class CausalWan:
    """A ``WanTransformer3DModel`` driven block by block (see the module's doc)."""

    def __init__(self, transformer: Any) -> None:
        self.transformer = transformer
        self._local = threading.local()
        for i, block in enumerate(transformer.blocks):
            block.attn1.set_processor(_SelfAttention(self, i))
            if getattr(block.attn2, "add_k_proj", None) is None:  # text-only cross-attention (T2V)
                block.attn2.set_processor(_CrossAttention(self, i))

    # ------------------------------------------------------------ shapes

    def tokens_per_frame(self, height: int, width: int) -> int:
        _, p_h, p_w = self.transformer.config.patch_size
        return (height // p_h) * (width // p_w)

    def new_cache(self, policy: WindowPolicy, height: int, width: int) -> KVCache:
        """An empty cache for a session of latents ``height`` by ``width``."""
        return KVCache(len(self.transformer.blocks), policy, self.tokens_per_frame(height, width))

    def current(self) -> _Call:
        call = getattr(self._local, "call", None)
        if call is None:
            raise RuntimeError("a CausalWan processor ran outside a CausalWan call")
        return call

    # ------------------------------------------------------------ forward

    def __call__(
        self,
        latents: torch.Tensor,
        timesteps: torch.Tensor,
        prompt_embeds: torch.Tensor,
        start: int,
        cache: KVCache,
        write: bool = False,
        cross: dict[int, tuple[torch.Tensor, torch.Tensor]] | None = None,
    ) -> torch.Tensor:
        """The model's output (flow) for ``latents`` [B, C, f, H, W], the frames from
        ``start`` on, at ``timesteps`` (one per frame, or one for all), attending to
        ``cache``; with ``write`` their keys and values go into the cache. ``cross``: the
        prompt's cross-attention cache (filled on first use; one dict per prompt)."""
        return self._forward(latents, timesteps, prompt_embeds, start, _Call(start, cache, write, cross=cross))

    def reference_forward(
        self, latents: torch.Tensor, timesteps: torch.Tensor, prompt_embeds: torch.Tensor, policy: WindowPolicy
    ) -> torch.Tensor:
        """Every frame from 0 in one pass, no cache: each block sees what it would see
        through a cache with ``policy`` (itself, the sink, its window). ``timesteps``: one per frame."""
        frames = latents.shape[2] // self.transformer.config.patch_size[0]
        per_frame = self.tokens_per_frame(latents.shape[3], latents.shape[4])
        visible = torch.zeros(frames, frames, dtype=torch.bool)
        block = policy.block_frames
        for s in range(0, frames, block):
            e = min(s + block, frames)
            seen = [*policy.visible(s, e), *range(s, e)]
            visible[s:e, seen] = True
        mask = visible.repeat_interleave(per_frame, 0).repeat_interleave(per_frame, 1).to(latents.device)
        return self._forward(latents, timesteps, prompt_embeds, 0, _Call(0, None, False, mask))

    def _forward(
        self, latents: torch.Tensor, timesteps: torch.Tensor, prompt_embeds: torch.Tensor, start: int, call: _Call
    ) -> torch.Tensor:
        t = self.transformer
        batch, _, frames, height, width = latents.shape
        p_t, p_h, p_w = t.config.patch_size
        ppf, pph, ppw = frames // p_t, height // p_h, width // p_w
        rotary = self._rotary(start, ppf, pph, ppw, latents.device)
        x = t.patch_embedding(latents.to(t.dtype)).flatten(2).transpose(1, 2).contiguous()
        # Time conditioning per frame (a block's frames are at one level; the reference
        # mixes clean past frames with a noisy block), broadcast over each frame's tokens.
        steps = timesteps.to(latents.device).float().reshape(-1)
        if steps.numel() == 1:
            steps = steps.expand(ppf)
        if steps.numel() != ppf:
            raise InputError("timesteps", f"one per latent frame ({ppf}) or one for all, got {steps.numel()}")
        steps = steps.repeat(batch)
        temb, proj, context, _ = t.condition_embedder(steps, prompt_embeds.to(t.dtype), None, timestep_seq_len=ppf)
        per_frame = pph * ppw
        temb = temb.repeat_interleave(per_frame, dim=1)  # [B, tokens, dim]
        proj = proj.repeat_interleave(per_frame, dim=1).unflatten(2, (6, -1))  # [B, tokens, 6, dim]
        self._local.call = call
        try:
            for block in t.blocks:
                x = block(x, context, proj, rotary)
        finally:
            self._local.call = None
        shift, scale = (t.scale_shift_table.unsqueeze(0).to(temb.device) + temb.unsqueeze(2)).chunk(2, dim=2)
        x = (t.norm_out(x.float()) * (1 + scale.squeeze(2)) + shift.squeeze(2)).type_as(x)
        x = t.proj_out(x)
        x = x.reshape(batch, ppf, pph, ppw, p_t, p_h, p_w, -1).permute(0, 7, 1, 4, 2, 5, 3, 6)
        return x.flatten(6, 7).flatten(4, 5).flatten(2, 3)

    def _rotary(self, start: int, ppf: int, pph: int, ppw: int, device: torch.device) -> tuple[torch.Tensor, ...]:
        """Wan's rotary tables with the frames at ``start ..`` (diffusers' always start at 0)."""
        rope = self.transformer.rope
        if start + ppf > rope.max_seq_len:
            raise InputError(
                "num_frames",
                f"latent frames {start}..{start + ppf - 1} go past the model's rotary table ({rope.max_seq_len})",
            )
        split = [rope.t_dim, rope.h_dim, rope.w_dim]
        out = []
        for table in (rope.freqs_cos, rope.freqs_sin):
            f, h, w = table.split(split, dim=1)
            grid = torch.cat(
                [
                    f[start : start + ppf].view(ppf, 1, 1, -1).expand(ppf, pph, ppw, -1),
                    h[:pph].view(1, pph, 1, -1).expand(ppf, pph, ppw, -1),
                    w[:ppw].view(1, 1, ppw, -1).expand(ppf, pph, ppw, -1),
                ],
                dim=-1,
            )
            out.append(grid.reshape(1, ppf * pph * ppw, 1, -1).to(device))
        return tuple(out)
