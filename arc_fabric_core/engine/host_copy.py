"""Copies of loop state for a checkpoint, made without stopping the loop.

On CUDA a tensor goes to pinned host memory with a non-blocking copy queued on the
current stream, and one event recorded after the last copy: the checkpoint writer waits
on that event on its own thread, the loop goes straight on to its next step. Stream
order guarantees each copy reads the tensor as it was when the copy was queued, even if a
later kernel overwrites it. torch's caching host allocator keeps the pinned blocks for
the next checkpoint (and holds a block back until the copies into it are done). On the
CPU a copy is a plain copy.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch


def to_host(tensor: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
    """A host copy of ``tensor`` (as ``dtype``), queued without waiting on CUDA: call
    :func:`copies_done` for the event to wait on before reading it."""
    tensor = tensor.detach()
    if dtype is not None and tensor.dtype != dtype:
        tensor = tensor.to(dtype)
    if tensor.device.type != "cuda":
        return tensor.to("cpu", copy=True).contiguous()
    out = torch.empty(tensor.shape, dtype=tensor.dtype, device="cpu", pin_memory=True)
    out.copy_(tensor, non_blocking=True)
    return out


def copies_done(sources: Iterable[torch.Tensor]) -> torch.cuda.Event | None:
    """An event marking the copies queued so far on the devices of ``sources``; None
    when none is on CUDA (nothing to wait for)."""
    devices = {t.device for t in sources if isinstance(t, torch.Tensor) and t.device.type == "cuda"}
    if not devices:
        return None
    # One device per session (its tensors live where its first model loaded).
    device = next(iter(devices))
    event = torch.cuda.Event()
    event.record(torch.cuda.current_stream(device))
    return event
