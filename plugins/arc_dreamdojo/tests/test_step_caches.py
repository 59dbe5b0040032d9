"""A step cache on a DreamDojo rollout: each chunk is a pass, the cache starts afresh in
each, skips steps inside it, and a rollout resumed mid-chunk in a new engine equals the
uninterrupted cached one bit for bit."""

from __future__ import annotations

from pathlib import Path

import torch
from arc_dreamdojo import plugin

from arc_fabric_core.engine.facade import Engine
from arc_fabric_core.runtime.step_caches.plugin import counts
from arc_fabric_core.store.files import SessionStore

H, W = 32, 48
PARAMS = {"height": H, "width": W, "seed": 2}


def frame() -> torch.Tensor:
    return plugin.quantize(torch.rand(3, H, W, generator=torch.Generator().manual_seed(0)))


def actions(chunks: int) -> torch.Tensor:
    out = torch.zeros(12 * chunks, 384)
    out[:, :29] = torch.rand(12 * chunks, 29, generator=torch.Generator().manual_seed(1)) * 2 - 1
    return out


CACHED = {**PARAMS, "num_frames": 25, "steps": 5, "cache": {"name": "fbc", "threshold": 0.9}}  # 2 chunks


def _create(engine: Engine, params: dict):
    return engine.create("dreamdojo", params, variant="tiny", inputs={"image": frame(), "actions": actions(2)})


def test_a_cached_rollout_skips_and_resumes_exactly(tmp_path: Path) -> None:
    store = SessionStore(tmp_path / "sessions")
    engine = Engine(store, device="cpu")
    whole = _create(engine, CACHED)
    engine.run(whole)
    expected = engine.final_latents(whole)
    ran, skipped = counts(whole.plugin_state)
    assert skipped > 0 and ran >= 2  # each chunk's first step runs (warmup), later ones may be skipped
    plain = _create(engine, {**CACHED, "cache": None})
    engine.run(plain)
    assert not torch.equal(engine.final_latents(plain), expected)

    for until in (2, 7):  # mid-chunk 0, mid-chunk 1
        session = _create(engine, CACHED)
        engine.run(session, until=until)
        resumed = Engine(store, device="cpu").resume(session.id)
        assert torch.equal(Engine(store, device="cpu").final_latents(resumed.id), expected), until
