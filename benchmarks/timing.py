"""Timing arms side by side, imported by the benchmark scripts beside it."""

from __future__ import annotations

import time
from collections.abc import Callable

import torch


def interleaved(arms: dict[str, Callable[[], object]], runs: int, device: torch.device) -> dict[str, list[float]]:
    """Wall time of every arm, ``runs`` times, round by round in alternating order, so
    that drift on a shared machine cancels out (CUDA work is synchronised around each)."""

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    times: dict[str, list[float]] = {name: [] for name in arms}
    order = list(arms)
    for run in range(runs):
        for name in order if run % 2 == 0 else order[::-1]:
            sync()
            t0 = time.perf_counter()
            arms[name]()
            sync()
            times[name].append(time.perf_counter() - t0)
    return times
