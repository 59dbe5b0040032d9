"""Parked plugin state is bounded in bytes as well as in sessions: the oldest goes first,
and a state too large alone is not kept (its session rebuilds it, exactly as after a
restore)."""

from __future__ import annotations

from pathlib import Path

import torch

from arc_fabric_core.contract.hookspecs import hookimpl
from arc_fabric_core.engine.facade import Engine
from arc_fabric_core.engine.live import state_bytes
from arc_fabric_core.store.files import SessionStore

PARAMS = {"num_frames": 2, "height": 8, "width": 8, "steps": 2}


class Keeps:
    """A wrapper keeping a buffer of ``floats`` float32 values per session (a cache's shape)."""

    def __init__(self, floats: int) -> None:
        self.floats = floats

    @hookimpl(wrapper=True)
    def arc_denoise_step(self, step):
        step.state.setdefault("keeps.buffer", {"kv": [torch.zeros(self.floats)]})
        return (yield)


def _engine(tmp_path: Path, toy_plugins, floats: int, max_bytes: int) -> Engine:
    toy_plugins.register(Keeps(floats), name="keeps")
    engine = Engine(SessionStore(tmp_path), plugins=toy_plugins, device="cpu")
    engine.live.max_bytes = max_bytes
    return engine


def test_the_oldest_state_goes_when_the_bytes_run_out(tmp_path: Path, toy_plugins) -> None:
    engine = _engine(tmp_path, toy_plugins, floats=1000, max_bytes=10_000)  # 4000 bytes each: two fit
    ids = [engine.run(engine.create("toy", {**PARAMS, "seed": seed})).id for seed in range(3)]
    assert engine.live.sessions() == ids[1:]
    assert engine.live.bytes == 8000


def test_a_state_larger_than_the_bound_is_not_kept(tmp_path: Path, toy_plugins) -> None:
    engine = _engine(tmp_path, toy_plugins, floats=1000, max_bytes=3000)
    engine.run(engine.create("toy", PARAMS))
    assert engine.live.sessions() == [] and engine.live.bytes == 0


def test_state_bytes_counts_each_tensor_once_and_no_module() -> None:
    shared = torch.zeros(10)

    class Cache:
        def __init__(self) -> None:
            self.k, self.v, self.again = torch.zeros(4, dtype=torch.float16), [shared], shared
            self.model = torch.nn.Linear(100, 100)

    assert state_bytes({"a": Cache(), "b": (shared,)}) == 4 * 2 + 10 * 4
