"""Block-by-block decoding with the VAE's causal cache carried over equals the one-shot
decode of the whole video."""

from __future__ import annotations

from pathlib import Path

import torch

from arc_fabric_core.engine.facade import Engine
from arc_fabric_core.store.files import SessionStore
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


def test_a_session_streams_each_block_as_its_last_step_ends(tmp_path: Path) -> None:
    """Every block's frames come with the event of its last step (also after a resume,
    when the decoder first catches up), and together they are the one-shot decode."""
    store = SessionStore(tmp_path / "store")
    engine = Engine(store, device="cpu")
    session = engine.create("longlive", {"num_frames": 45, "height": 64, "width": 64}, variant="tiny")
    got: dict[int, torch.Tensor] = {}

    def listen(event) -> None:
        if event.frames is not None:
            got[event.step] = event.frames

    engine.run(session, until=6, listeners=[listen])
    again = Engine(SessionStore(tmp_path / "store"), device="cpu")
    resumed = again.open(session.id)
    again.run(resumed, listeners=[listen])
    assert sorted(got) == [4, 8, 12, 16]
    streamed = torch.cat([got[k] for k in sorted(got)])
    whole = again.decode(resumed)
    assert torch.allclose(streamed, whole, atol=1e-5, rtol=0), (streamed - whole).abs().max()
