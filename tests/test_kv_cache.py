"""The core KV cache: which past frames a block sees, what is evicted, where it lives."""

from __future__ import annotations

import pytest
import torch

from arc_fabric_core.contract.errors import InputError
from arc_fabric_core.kit.kv_cache import KVCache, WindowPolicy

TOKENS = 4  # per frame


def frames_kv(start: int, count: int) -> tuple[torch.Tensor, torch.Tensor]:
    """K/V whose every token carries its frame number (so a test can read what it got)."""
    k = torch.arange(start, start + count).float().repeat_interleave(TOKENS).view(1, -1, 1, 1).expand(1, -1, 2, 3)
    return k.contiguous(), (k + 0.5).contiguous()


def seen(k: torch.Tensor) -> list[int]:
    return [int(x) for x in k[0, ::TOKENS, 0, 0]]


def test_longlives_window_sees_the_sink_and_the_recent_frames() -> None:
    policy = WindowPolicy(block_frames=3, window_frames=12, sink_frames=3)
    assert policy.visible(0, 3) == []
    assert policy.visible(9, 12) == list(range(9))
    # From frame 12 on, a block sees the sink and 6 past frames: 12 frames with its own 3.
    assert policy.visible(12, 15) == [0, 1, 2, 6, 7, 8, 9, 10, 11]
    assert policy.visible(42, 45) == [0, 1, 2, 36, 37, 38, 39, 40, 41]
    assert WindowPolicy(3, -1, 3).visible(42, 45) == list(range(42))
    assert WindowPolicy(3, 6, 0).visible(9, 12) == [6, 7, 8]


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"block_frames": 0}, "block_frames"),
        ({"window_frames": 5}, "window_frames"),
        ({"sink_frames": -1}, "sink_frames"),
    ],
)
def test_a_bad_policy_names_its_field(kwargs: dict, field: str) -> None:
    with pytest.raises(InputError) as err:
        WindowPolicy(**kwargs)
    assert err.value.field == field


def test_writing_blocks_evicts_what_no_later_block_sees() -> None:
    cache = KVCache(layers=2, policy=WindowPolicy(3, 12, 3), tokens_per_frame=TOKENS)
    for start in range(0, 18, 3):
        k, v = frames_kv(start, 3)
        got_k, got_v = cache.attend(0, start, k, v)
        assert seen(got_k) == [*WindowPolicy(3, 12, 3).visible(start, start + 3), start, start + 1, start + 2]
        assert torch.equal(got_v, got_k + 0.5)
        for layer in range(2):
            cache.write(layer, start, k, v)
    # After frames 15..17: the next block (18..20) sees the sink and 12..17.
    assert cache.frames == [0, 1, 2, 12, 13, 14, 15, 16, 17] and cache.end == 18
    assert cache.nbytes == 2 * 2 * 9 * TOKENS * 2 * 3 * 4
    # A block written again (LongLive's re-cache after a prompt switch) replaces its frames.
    k, v = frames_kv(12, 6)
    cache.write(1, 12, k * 10, v)
    got, _ = cache.attend(1, 18, *frames_kv(18, 3))
    assert seen(got) == [0, 1, 2, 120, 130, 140, 150, 160, 170, 18, 19, 20]


def test_a_block_missing_its_past_or_written_behind_later_frames_is_refused() -> None:
    cache = KVCache(layers=1, policy=WindowPolicy(3, 12, 3), tokens_per_frame=TOKENS)
    with pytest.raises(RuntimeError, match=r"lacks frames \[0, 1, 2\]"):
        cache.attend(0, 3, *frames_kv(3, 3))
    cache.write(0, 0, *frames_kv(0, 6))
    with pytest.raises(RuntimeError, match="held after"):
        cache.write(0, 0, *frames_kv(0, 3))


def test_it_moves_to_the_cpu_and_back() -> None:
    cache = KVCache(layers=1, policy=WindowPolicy(3, 12, 3), tokens_per_frame=TOKENS)
    cache.write(0, 0, *frames_kv(0, 3))
    assert cache.to("cpu").device == torch.device("cpu") and cache.frames == [0, 1, 2]
    cache.clear()
    assert cache.frames == [] and cache.nbytes == 0 and cache.device is None
