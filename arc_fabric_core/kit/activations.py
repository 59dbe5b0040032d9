"""Estimates of the memory a run needs beside the weights (``arc_activation_bytes``).

The model cache places a model on a device with room for its weights plus this margin,
and a size whose margin fits no device is refused before it is queued; so an estimate
should be a little above the measured peak, never below. The pieces here are the
common ones: a transformer call over a video's tokens, a KV cache, the Wan VAE's
decode, the decoded video; a plugin combines them with its model's widths.
"""

from __future__ import annotations


def latent_tokens(num_frames: int, height: int, width: int, frames_per_token: int, pixels_per_token: int) -> int:
    """The transformer tokens of a video: its latent frames (a causal VAE keeps the first
    frame alone, then compresses ``frames_per_token`` to one) times the rows and columns
    of ``pixels_per_token`` pixels (the VAE's compression times the patch size)."""
    latent_frames = (num_frames - 1) // frames_per_token + 1
    return latent_frames * (height // pixels_per_token) * (width // pixels_per_token)


def transformer_call_bytes(tokens: int, dim: int, ffn: int, item_bytes: int, batch: int = 1) -> int:
    """One transformer call beside its weights: the feed-forward hidden layer (``ffn``
    wide) and q/k/v/out (``dim`` wide) of every token, a block at a time; ``batch``
    videos at once (CFG's two halves in one call)."""
    return batch * tokens * (ffn + 4 * dim) * item_bytes


def kv_cache_bytes(layers: int, frames: int, tokens_per_frame: int, dim: int, item_bytes: int) -> int:
    """What a :class:`~arc_fabric_core.kit.kv_cache.KVCache` holding ``frames`` frames
    takes: keys and values of every layer."""
    return 2 * layers * frames * tokens_per_frame * dim * item_bytes


def video_bytes(num_frames: int, height: int, width: int) -> int:
    """The decoded video: float32 RGB frames."""
    return num_frames * height * width * 3 * 4


def wan_vae_decode_bytes(num_frames: int, height: int, width: int, base_dim: int) -> int:
    """The Wan VAE's decode (``AutoencoderKLWan`` of width ``base_dim``: 96 published):
    the float32 features of its causal chunks at full resolution, and the decoded video.
    Calibrated on an H200 at 81x480x832, where the decode peaked 8.76 GiB above the
    weights; this gives 9.5 GiB there."""
    return height * width * base_dim * 4 * 64 + video_bytes(num_frames, height, width)
