"""Live sessions: an extension on the same warm model continues the parent's KV cache and
streaming decoder instead of replaying every earlier block, and equals both the rebuilt
extension (another engine, as in another process) and the longer video made at once."""

from __future__ import annotations

from pathlib import Path

import torch

from arc_fabric_core.engine.facade import Engine
from arc_fabric_core.store.files import SessionStore

SMALL = {"prompt": "a fox in the snow", "num_frames": 9, "height": 64, "width": 64, "seed": 3}  # 1 block


def _counting(engine: Engine, session) -> list[int]:
    """Transformer calls, counted (a denoising step or a clean pass writing the cache)."""
    calls: list[int] = []
    first_block = engine.load(session.ref, "cpu").pipe.transformer.blocks[0]  # once per transformer pass
    first_block.register_forward_hook(lambda *a: calls.append(1))
    return calls


def test_an_extension_continues_the_live_parent(tmp_path: Path) -> None:
    engine = Engine(SessionStore(tmp_path / "s"), device="cpu")
    session = engine.create("longlive", SMALL, variant="tiny")
    calls = _counting(engine, session)
    engine.run(session)
    costs, chain = [], session
    for _ in range(3):
        chain = engine.extend(chain.id, blocks=1)
        before = len(calls)
        engine.run(chain)
        costs.append(len(calls) - before)
    # Each extension: its block's 4 steps, and one clean pass writing the block before.
    assert costs == [5, 5, 5]
    live = engine.final_latents(chain)

    # The same chain where nothing stays live (a new engine for each extension) replays the
    # earlier blocks, and ends in the same latents; so does generating 4 blocks at once.
    other = SessionStore(tmp_path / "s")
    short = Engine(other, device="cpu", cache=engine.cache).create("longlive", SMALL, variant="tiny")
    Engine(other, device="cpu", cache=engine.cache).run(short)
    rebuilt_costs, chain = [], short
    for _ in range(3):
        fresh = Engine(other, device="cpu", cache=engine.cache)
        chain = fresh.extend(chain.id, blocks=1)
        before = len(calls)
        fresh.run(chain)
        rebuilt_costs.append(len(calls) - before)
    assert rebuilt_costs == [5, 6, 7]  # the cost grows with the length
    assert torch.equal(Engine(other, device="cpu", cache=engine.cache).final_latents(chain), live)

    once = engine.create("longlive", {**SMALL, "num_frames": 45}, variant="tiny")
    engine.run(once)
    assert torch.equal(engine.final_latents(once), live)


def test_a_paused_session_resumed_here_goes_on_with_its_state(tmp_path: Path) -> None:
    engine = Engine(SessionStore(tmp_path / "s"), device="cpu")
    session = engine.create("longlive", {**SMALL, "num_frames": 33}, variant="tiny")  # 3 blocks
    calls = _counting(engine, session)
    engine.run(session, until=6)  # into block 1
    before = len(calls)
    resumed = engine.resume(session.id)
    # Steps 6..11 and block 2's: 6 steps, one clean pass (block 1), no replay of block 0.
    assert len(calls) - before == 6 + 1
    full = engine.create("longlive", {**SMALL, "num_frames": 33}, variant="tiny")
    engine.run(full)
    assert torch.equal(engine.final_latents(resumed), engine.final_latents(full))
