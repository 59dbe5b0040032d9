"""UniPC keeps a history of model outputs; only restoring it makes a resume exact."""

from __future__ import annotations

import torch
from diffusers import UniPCMultistepScheduler

from arc_fabric_core.engine.scheduler_state import capture, restore

CONFIG = dict(prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=5.0, num_train_timesteps=1000)


def fresh(steps: int) -> UniPCMultistepScheduler:
    s = UniPCMultistepScheduler(**CONFIG)
    s.set_timesteps(steps)
    s.set_begin_index(0)
    return s


def fake_model(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return torch.sin(x * 3 + t / 100)


def run(s, x, start, stop):
    for i in range(start, stop):
        t = s.timesteps[i]
        x = s.step(fake_model(x, t), t, x, return_dict=False)[0]
    return x


def test_capture_restore_is_exact_and_needed() -> None:
    steps, k = 8, 4
    x0 = torch.randn(1, 4, 2, 4, 4, generator=torch.Generator().manual_seed(0))
    full = run(fresh(steps), x0, 0, steps)

    first = fresh(steps)
    mid = run(first, x0, 0, k)
    tensors, state = capture(first)

    second = fresh(steps)
    restore(second, tensors, state, torch.device("cpu"))
    assert torch.equal(run(second, mid, k, steps), full)

    naive = fresh(steps)
    naive.set_begin_index(k)
    assert not torch.equal(run(naive, mid, k, steps), full)


def test_captured_tensors_are_copies() -> None:
    s = fresh(4)
    x = torch.randn(1, 2, 1, 2, 2)
    run(s, x, 0, 2)
    tensors, _ = capture(s)
    key = next(k for k in tensors if k.startswith("scheduler.model_outputs"))
    before = tensors[key].clone()
    for out in s.model_outputs:
        if out is not None:
            out.add_(1.0)
    assert torch.equal(tensors[key], before)
