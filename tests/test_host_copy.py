"""Checkpoint copies: on the CPU a plain copy; on CUDA pinned and queued, read after
the event the writer waits on."""

from __future__ import annotations

import pytest
import torch

from arc_fabric_core.engine.host_copy import copies_done, to_host


def test_a_cpu_copy_is_its_own_and_needs_no_wait() -> None:
    source = torch.arange(6.0).reshape(2, 3).t()  # not contiguous
    copy = to_host(source)
    source.add_(1)
    assert torch.equal(copy, torch.arange(6.0).reshape(2, 3).t()) and copy.is_contiguous()
    assert to_host(source, torch.float64).dtype == torch.float64
    assert copies_done([source]) is None


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_a_cuda_copy_is_pinned_and_holds_the_value_it_was_queued_with() -> None:
    source = torch.randn(64, 1024, device="cuda")
    expected = source.cpu()
    copy = to_host(source)
    source.mul_(0)  # queued after the copy: the copy must not see it
    event = copies_done([source])
    assert event is not None and copy.is_pinned()
    event.synchronize()
    assert torch.equal(copy, expected)
