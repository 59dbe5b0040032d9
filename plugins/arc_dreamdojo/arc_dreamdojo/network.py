"""DreamDojo's denoiser: diffusers' Cosmos-Predict2.5 transformer plus the two action MLPs.

DreamDojo (``ActionChunkConditionedMinimalV1LVGDiT``) is Cosmos' MiniTrainDIT, which is
diffusers' ``CosmosTransformer3DModel``, with one addition: a chunk's actions, grouped
per latent frame (4 actions of 384 dims -> 1536), go through two MLPs whose outputs are
added per latent frame to the time embedding — ``action_embedder_B_D`` to the raw
timestep sinusoid before its RMSNorm, ``action_embedder_B_3D`` to the AdaLN-LoRA
embedding. The conditioning latent frame gets a zero action.

Where this departs from diffusers' forward: diffusers has no way in for a per-frame
addition to the time embedding, so :class:`ActionTimeEmbedding` replaces the
transformer's ``time_embed`` (same children, so the same weight names) and adds the
actions it is handed for the one call. Everything else is diffusers' forward unchanged,
run with a 5-D timestep ``[B, 1, T, 1, 1]`` so that the embedding is per latent frame.
Without actions the module is diffusers' own, bit for bit.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from diffusers.models.transformers.transformer_cosmos import CosmosEmbedding, CosmosTransformer3DModel
from torch import nn

ACTION_DIM = 384  # the unified action vector of every embodiment
ACTIONS_PER_LATENT_FRAME = 4  # the Wan VAE's temporal compression


class ActionMLP(nn.Module):
    """Linear - GELU(tanh) - Linear, named as the authors' ``Mlp`` (``fc1``, ``fc2``)."""

    def __init__(self, in_features: int, hidden_features: int, out_features: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden_features)
        self.activation = nn.GELU(approximate="tanh")
        self.fc2 = nn.Linear(hidden_features, out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.activation(self.fc1(x)))


class ActionTimeEmbedding(CosmosEmbedding):
    """diffusers' Cosmos time embedding with the actions of the current call added:
    ``norm(sinusoid + a_D)`` and ``t_embedder(sinusoid) + a_3D`` (the authors' order: the
    AdaLN-LoRA embedding is made from the bare sinusoid, then the action is added)."""

    def __init__(self, embedding_dim: int, condition_dim: int) -> None:
        super().__init__(embedding_dim, condition_dim)
        self._actions: tuple[torch.Tensor, torch.Tensor] | None = None

    def forward(self, hidden_states: torch.Tensor, timestep: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        proj = self.time_proj(timestep).type_as(hidden_states)
        if self._actions is None:
            return self.t_embedder(proj), self.norm(proj)
        a_d, a_3d = self._actions  # [B, T, D], [B, T, 3D]; timestep is [B*T] (diffusers' 5-D path)
        if a_d.shape[0] * a_d.shape[1] != proj.shape[0]:
            raise ValueError(f"actions for {a_d.shape[0] * a_d.shape[1]} frames, timesteps for {proj.shape[0]}")
        temb = self.t_embedder(proj) + a_3d.reshape(-1, a_3d.shape[-1]).type_as(proj)
        return temb, self.norm(proj + a_d.reshape(-1, a_d.shape[-1]).type_as(proj))

    @contextmanager
    def actions(self, a_d: torch.Tensor, a_3d: torch.Tensor) -> Iterator[None]:
        self._actions = (a_d, a_3d)
        try:
            yield
        finally:
            self._actions = None


class DreamDojoNet(nn.Module):
    """The transformer and the action MLPs. State dict: ``transformer.*`` (diffusers'
    names), ``action_embedder_B_D.fc{1,2}.*``, ``action_embedder_B_3D.fc{1,2}.*``."""

    def __init__(self, transformer: CosmosTransformer3DModel, action_dim: int = ACTION_DIM) -> None:
        super().__init__()
        hidden = transformer.config.num_attention_heads * transformer.config.attention_head_dim
        old = transformer.time_embed
        embed = ActionTimeEmbedding(hidden, hidden).to(device=old.norm.weight.device, dtype=old.norm.weight.dtype)
        embed.load_state_dict(old.state_dict())
        transformer.time_embed = embed
        self.transformer = transformer
        grouped = action_dim * ACTIONS_PER_LATENT_FRAME
        self.action_embedder_B_D = ActionMLP(grouped, 4 * hidden, hidden)
        self.action_embedder_B_3D = ActionMLP(grouped, 4 * hidden, 3 * hidden)
        self.action_dim = action_dim

    @property
    def dtype(self) -> torch.dtype:
        return self.transformer.dtype

    def action_embeddings(self, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``actions`` [B, 4n, 384] -> per latent frame [B, 1 + n, D] and [B, 1 + n, 3D],
        the first (the conditioning frame) zero."""
        b, count, dim = actions.shape
        if count % ACTIONS_PER_LATENT_FRAME or dim != self.action_dim:
            raise ValueError(f"actions must be [B, 4n, {self.action_dim}], got {tuple(actions.shape)}")
        grouped = actions.reshape(b, count // ACTIONS_PER_LATENT_FRAME, ACTIONS_PER_LATENT_FRAME * dim)
        a_d, a_3d = self.action_embedder_B_D(grouped), self.action_embedder_B_3D(grouped)
        zero_d, zero_3d = a_d.new_zeros(b, 1, a_d.shape[-1]), a_3d.new_zeros(b, 1, a_3d.shape[-1])
        return torch.cat([zero_d, a_d], dim=1), torch.cat([zero_3d, a_3d], dim=1)

    def forward(
        self,
        latents: torch.Tensor,
        timestep: torch.Tensor,
        text: torch.Tensor,
        condition_mask: torch.Tensor,
        padding_mask: torch.Tensor,
        actions: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The velocity for ``latents`` [B, 16, T, H, W] at ``timestep`` [B, 1, T, 1, 1]."""
        call: dict[str, Any] = {
            "hidden_states": latents,
            "timestep": timestep,
            "encoder_hidden_states": text,
            "condition_mask": condition_mask,
            "padding_mask": padding_mask,
            "return_dict": False,
        }
        if actions is None:
            return self.transformer(**call)[0]
        a_d, a_3d = self.action_embeddings(actions.to(self.dtype))
        with self.transformer.time_embed.actions(a_d, a_3d):
            return self.transformer(**call)[0]
