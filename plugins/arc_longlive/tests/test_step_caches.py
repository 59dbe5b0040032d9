"""LongLive takes no step cache: its step also runs the clean passes that write the KV
cache. Asked for one, it is refused naming the field, before anything is written."""

from __future__ import annotations

from pathlib import Path

import pytest

from arc_fabric_core.contract.errors import InputError
from arc_fabric_core.engine.facade import Engine
from arc_fabric_core.store.files import SessionStore


def test_a_step_cache_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    engine = Engine(SessionStore(tmp_path), device="cpu")
    params = {"prompt": "a fox", "num_frames": 45, "height": 64, "width": 64, "cache": "fbc"}
    with pytest.raises(InputError) as info:
        engine.create("longlive", params, variant="tiny")
    assert info.value.field == "cache" and "KV cache" in info.value.message
    assert not any(tmp_path.rglob("session.json"))
