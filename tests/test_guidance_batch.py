"""The batched-guidance helpers of kit.guidance: when to batch, how branches stack."""

from __future__ import annotations

import pytest
import torch

from arc_fabric_core.kit.guidance import Unbatchable, batch_guidance, run_batched, stack_branches


@pytest.mark.parametrize(
    ("setting", "device", "pipeline_batches", "expected"),
    [
        ("on", "cpu", False, True),
        ("off", "cuda:0", False, False),
        ("off", "cpu", True, False),
        ("auto", "cpu", False, False),
        ("auto", "cuda:1", False, False),  # as the pipeline: two passes on every device
        ("auto", "cpu", True, True),
    ],
)
def test_when_to_batch(setting: str, device: str, pipeline_batches: bool, expected: bool) -> None:
    assert batch_guidance(setting, device, pipeline_batches=pipeline_batches) is expected


def test_an_unknown_setting_is_refused() -> None:
    with pytest.raises(ValueError, match="auto, on or off"):
        batch_guidance("maybe", "cpu")


def test_branches_stack_per_sample_and_pass_the_rest_once() -> None:
    x, t = torch.randn(1, 3, 4), torch.tensor([7.0])
    a, b = torch.randn(1, 5, 2), torch.randn(1, 5, 2)
    rope = (torch.randn(1, 4, 2), torch.randn(1, 4, 2))
    flag = object()
    out = stack_branches(
        [{"x": x, "t": t, "e": a, "r": rope, "f": flag}, {"x": x, "t": t, "e": b, "r": rope, "f": flag}]
    )
    assert torch.equal(out["x"], torch.cat([x, x])) and torch.equal(out["t"], torch.tensor([7.0, 7.0]))
    assert torch.equal(out["e"], torch.cat([a, b]))
    assert all(torch.equal(o, torch.cat([r, r])) for o, r in zip(out["r"], rope, strict=True))
    assert out["f"] is flag


def test_different_lengths_are_padded_under_their_mask() -> None:
    long, short = torch.randn(1, 5, 2), torch.randn(1, 3, 2)
    out = stack_branches([{"e": long, "m": torch.ones(1, 5)}, {"e": short, "m": torch.ones(1, 3)}], masks={"e": "m"})
    assert out["e"].shape == (2, 5, 2) and torch.equal(out["e"][1, :3], short[0])
    assert torch.equal(out["e"][1, 3:], torch.zeros(2, 2))
    assert torch.equal(out["m"], torch.tensor([[1.0] * 5, [1.0] * 3 + [0.0] * 2]))


def test_without_a_mask_different_lengths_fall_back_to_two_passes() -> None:
    calls: list[int] = []

    def call(e: torch.Tensor) -> torch.Tensor:
        calls.append(e.shape[0])
        return e

    assert run_batched(call, [{"e": torch.randn(1, 5, 2)}, {"e": torch.randn(1, 3, 2)}]) is None
    assert calls == []
    with pytest.raises(Unbatchable):
        stack_branches([{"e": torch.randn(1, 5)}, {"e": 3}])


def test_the_output_splits_back_in_the_branches_order() -> None:
    a, b = torch.randn(1, 4), torch.randn(1, 4)
    first, second = run_batched(lambda e: e * 2, [{"e": a}, {"e": b}])
    assert torch.equal(first, a * 2) and torch.equal(second, b * 2)
