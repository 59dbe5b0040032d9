"""Self-attention caches for autoregressive video models, one per session.

A frame-level autoregressive model (LongLive, Self-Forcing) denoises a video a block
of latent frames at a time; the frames already made are not run again, their keys and
values are kept. What a block may see is the model's *window policy*:

- the **sink**: the first ``sink_frames`` frames, seen by every later block, never evicted;
- the **local window**: the most recent frames, so that a block together with what it
  sees of the past spans ``window_frames`` frames (its own frames included).

For a block of frames ``[start, end)`` the visible frames are therefore
``[0, sink) + [max(sink, end - (window - sink)), end)``. A frame no later block can see
is evicted as soon as the block after it is known. Keys are stored as the model made
them (LongLive stores them rotated at their absolute frame position, so nothing is
re-indexed on eviction).

The cache keeps the frames of each layer in frame order, as one tensor per layer, and
answers "the keys and values a block attends to" — its visible past frames followed by
the block's own. ``nbytes`` is what it holds (the model cache reserves that beside the
weights); ``to(device)`` parks it in (pinned) CPU memory while its session is paused and
brings it back.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from arc_fabric_core.contract.errors import InputError


@dataclass(frozen=True)
class WindowPolicy:
    """Which past frames a block sees (in latent frames)."""

    block_frames: int = 3
    window_frames: int = 12  # -1: everything before (no eviction)
    sink_frames: int = 3

    def __post_init__(self) -> None:
        if self.block_frames < 1:
            raise InputError("block_frames", f"must be at least 1, got {self.block_frames}")
        if self.window_frames != -1 and self.window_frames < self.block_frames + self.sink_frames:
            raise InputError(
                "window_frames",
                f"must hold a block and the sink ({self.block_frames} + {self.sink_frames}) or be -1, "
                f"got {self.window_frames}",
            )
        if self.sink_frames < 0:
            raise InputError("sink_frames", f"must be 0 or more, got {self.sink_frames}")

    def visible(self, start: int, end: int) -> list[int]:
        """The past frames (before ``start``) that the frames ``[start, end)`` attend to."""
        if self.window_frames == -1:
            return list(range(start))
        local_from = max(self.sink_frames, end - (self.window_frames - self.sink_frames))
        return [f for f in range(start) if f < self.sink_frames or f >= local_from]

    def keep(self, next_start: int) -> int:
        """Frames below this (and above the sink) are seen by no block from ``next_start`` on."""
        if self.window_frames == -1:
            return 0
        return next_start + self.block_frames - (self.window_frames - self.sink_frames)


@dataclass
class _Layer:
    k: torch.Tensor | None = None  # [B, frames * tokens, heads, dim], frames in order
    v: torch.Tensor | None = None
    frames: list[int] = field(default_factory=list)


class KVCache:
    """The self-attention keys and values of one session's past frames, per layer."""

    def __init__(self, layers: int, policy: WindowPolicy, tokens_per_frame: int) -> None:
        self.policy = policy
        self.tokens_per_frame = tokens_per_frame
        self._layers = [_Layer() for _ in range(layers)]

    # ------------------------------------------------------------ what is held

    @property
    def frames(self) -> list[int]:
        """The frames held (the same in every layer once a block has been written)."""
        return list(self._layers[0].frames)

    @property
    def end(self) -> int:
        """One past the last frame held (0 when empty)."""
        frames = self._layers[0].frames
        return frames[-1] + 1 if frames else 0

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for layer in self._layers for t in (layer.k, layer.v) if t is not None)

    @property
    def device(self) -> torch.device | None:
        k = self._layers[0].k
        return None if k is None else k.device

    def clear(self) -> None:
        for layer in self._layers:
            layer.k = layer.v = None
            layer.frames = []

    # ------------------------------------------------------------ attending and writing

    def attend(self, layer: int, start: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The keys and values that the frames ``[start, start + f)`` (whose own are ``k``,
        ``v``: [B, f * tokens, heads, dim]) attend to: their visible past, then themselves."""
        end = start + k.shape[1] // self.tokens_per_frame
        held = self._layers[layer]
        want = self.policy.visible(start, end)
        missing = [f for f in want if f not in held.frames]
        if missing:
            raise RuntimeError(
                f"the cache lacks frames {missing[:6]}{'...' if len(missing) > 6 else ''} that frames "
                f"{start}..{end - 1} attend to (held: {held.frames[:3]}...{held.frames[-3:]})"
            )
        if not want:
            return k, v
        past_k, past_v = self._select(held, want)
        return torch.cat([past_k, k], dim=1), torch.cat([past_v, v], dim=1)

    def write(self, layer: int, start: int, k: torch.Tensor, v: torch.Tensor) -> None:
        """Hold ``k``, ``v`` as the frames from ``start`` on (replacing what was held for
        them), then drop what no block after them can see."""
        count = k.shape[1] // self.tokens_per_frame
        new = list(range(start, start + count))
        held = self._layers[layer]
        keep_from = self.policy.keep(start + count)
        older = [f for f in held.frames if f < start and (f < self.policy.sink_frames or f >= keep_from)]
        later = [f for f in held.frames if f >= start + count]
        if later:
            raise RuntimeError(f"frames {later[:3]}... are held after the frames {start}..{new[-1]} being written")
        mine = [f for f in new if f < self.policy.sink_frames or f >= keep_from]
        parts_k, parts_v = [], []
        if older:
            old_k, old_v = self._select(held, older)
            parts_k.append(old_k)
            parts_v.append(old_v)
        if mine:
            t = self.tokens_per_frame
            lo, hi = (mine[0] - start) * t, (mine[-1] - start + 1) * t
            parts_k.append(k[:, lo:hi])
            parts_v.append(v[:, lo:hi])
        held.frames = older + mine
        # Copies, not views: the caller's tensors (and the old cache) can go.
        held.k = torch.cat(parts_k, dim=1) if parts_k else None
        held.v = torch.cat(parts_v, dim=1) if parts_v else None

    def _select(self, held: _Layer, frames: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        assert held.k is not None and held.v is not None
        t = self.tokens_per_frame
        if frames == held.frames:
            return held.k, held.v
        index = {f: i for i, f in enumerate(held.frames)}
        rows = torch.cat([torch.arange(index[f] * t, (index[f] + 1) * t) for f in frames]).to(held.k.device)
        return held.k.index_select(1, rows), held.v.index_select(1, rows)

    # ------------------------------------------------------------ where it lives

    def park(self) -> None:
        """While its session is paused: in CPU memory (the engine calls it)."""
        self.to("cpu")

    def to(self, device: torch.device | str, pin: bool = True) -> KVCache:
        """Move every tensor to ``device`` (to the CPU: pinned when CUDA is there, so the
        way back is a fast copy)."""
        target = torch.device(device)
        for layer in self._layers:
            for name in ("k", "v"):
                tensor = getattr(layer, name)
                if tensor is None or tensor.device == target:
                    continue
                moved = tensor.to(target)
                if target.type == "cpu" and pin and torch.cuda.is_available():
                    moved = moved.pin_memory()
                setattr(layer, name, moved)
        return self
