"""Block-by-block decoding with the VAE's causal cache carried over equals the one-shot
decode of the whole video."""

from __future__ import annotations

from pathlib import Path

import torch

from arc_fabric_core.engine import Engine
from arc_fabric_core.store import SessionStore
from arc_longlive.streaming import StreamingDecoder


def test_streamed_blocks_are_the_one_shot_decode(tmp_path: Path) -> None:
    engine = Engine(SessionStore(tmp_path / "store"), device="cpu")
    session = engine.create("longlive", {"num_frames": 45, "height": 64, "width": 64}, variant="tiny")
    engine.run(session)
    latents = engine.final_latents(session)
    whole = engine.decode(session)

    stream = StreamingDecoder(engine.load(session.ref, "cpu").pipe.vae)
    parts = [stream.decode(latents[:, :, b : b + 3]) for b in range(0, 12, 3)]
    assert [p.shape[0] for p in parts] == [9, 12, 12, 12]
    assert torch.allclose(torch.cat(parts), whole, atol=1e-5, rtol=0), (torch.cat(parts) - whole).abs().max()
