"""DreamDojo rollouts as sessions, on the tiny model: a rollout resumed mid-chunk in a
new process equals an uninterrupted one bit for bit; a fork at a chunk with other
actions changes only the chunks from there; rewind; act on a live session equals the
full rollout of the same actions without making the earlier chunks again; edit is refused."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from arc_dreamdojo import plugin

from arc_fabric_core.contract.errors import InputError, SessionError
from arc_fabric_core.engine.facade import Engine
from arc_fabric_core.store.files import SessionStore

H, W, STEPS = 32, 48, 3
PARAMS = {"num_frames": 37, "height": H, "width": W, "steps": STEPS, "seed": 2}  # 3 chunks


def frame() -> torch.Tensor:
    return plugin.quantize(torch.rand(3, H, W, generator=torch.Generator().manual_seed(0)))


def actions(chunks: int, seed: int = 1) -> torch.Tensor:
    out = torch.zeros(12 * chunks, 384)
    out[:, :29] = torch.rand(12 * chunks, 29, generator=torch.Generator().manual_seed(seed)) * 2 - 1
    return out


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    return Engine(SessionStore(tmp_path / "sessions"), device="cpu")


def rollout(engine: Engine, acts: torch.Tensor, **params) -> torch.Tensor:
    chunks = acts.shape[0] // 12
    session = engine.create(
        "dreamdojo",
        {**PARAMS, "num_frames": 1 + 12 * chunks, **params},
        variant="tiny",
        inputs={"image": frame(), "actions": acts},
    )
    engine.run(session)
    return engine.final_latents(session)


def test_each_chunk_is_a_pass_with_a_checkpoint_at_its_boundary(engine: Engine) -> None:
    session = engine.create("dreamdojo", PARAMS, variant="tiny", inputs={"image": frame(), "actions": actions(3)})
    assert session.doc.passes == [STEPS] * 3
    engine.run(session)
    steps = {c.step for c in engine.store.load_doc(session.id).checkpoints}
    assert {0, STEPS, 2 * STEPS} <= steps
    assert engine.decode(session).shape == (37, H, W, 3)


@pytest.mark.parametrize("until", [STEPS + 1, 2 * STEPS])  # mid-chunk 1, at chunk 2's start
def test_a_rollout_resumed_in_a_new_process_equals_an_uninterrupted_one(tmp_path: Path, until: int) -> None:
    store = SessionStore(tmp_path / "sessions")
    whole = rollout(Engine(store, device="cpu"), actions(3))
    first = Engine(store, device="cpu")
    session = first.create("dreamdojo", PARAMS, variant="tiny", inputs={"image": frame(), "actions": actions(3)})
    first.run(session, until=until)
    code = (
        "import sys; from arc_fabric_core.engine.facade import Engine; from arc_fabric_core.store.files import "
        "SessionStore; from safetensors.torch import save_file\n"
        "e = Engine(SessionStore(sys.argv[1]), device='cpu'); s = e.open(sys.argv[2]); e.run(s)\n"
        "save_file({'x': e.final_latents(s).contiguous()}, sys.argv[3])\n"
    )
    out = tmp_path / "resumed.safetensors"
    subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "sessions"), session.id, str(out)],
        check=True,
        env={**os.environ},
        timeout=300,
    )
    from safetensors.torch import load_file

    assert torch.equal(load_file(str(out))["x"], whole)


def test_a_fork_at_a_chunk_with_other_actions_changes_only_the_chunks_from_there(engine: Engine) -> None:
    acts = actions(3)
    session = engine.create("dreamdojo", PARAMS, variant="tiny", inputs={"image": frame(), "actions": acts})
    engine.run(session)
    other = actions(2, seed=9)
    child = engine.apply(session.id, "fork", {"step": STEPS, "inputs": {"actions": other.tolist()}})
    engine.run(child)
    got = engine.final_latents(child)
    expected = rollout(engine, torch.cat([acts[:12], other]))
    assert torch.equal(got, expected)
    assert torch.equal(got[:, :, :4], engine.final_latents(session)[:, :, :4])


def test_rewind_to_a_chunk_remakes_it_and_what_follows(engine: Engine) -> None:
    acts = actions(3)
    session = engine.create("dreamdojo", PARAMS, variant="tiny", inputs={"image": frame(), "actions": acts})
    engine.run(session)
    other = actions(1, seed=5)
    child = engine.apply(session.id, "rewind", {"block": 2, "inputs": {"actions": other}})
    assert child.step_index == 2 * STEPS
    engine.run(child)
    assert torch.equal(engine.final_latents(child), rollout(engine, torch.cat([acts[:24], other])))


def test_act_on_a_live_rollout_equals_the_full_rollout_without_remaking_earlier_chunks(engine: Engine) -> None:
    acts = actions(3)
    session = engine.create(
        "dreamdojo", {**PARAMS, "num_frames": 25}, variant="tiny", inputs={"image": frame(), "actions": acts[:24]}
    )
    engine.run(session)
    decodes: list[int] = []
    steps: list[int] = []
    real_decode, real_velocity = plugin.decode_chunk, plugin.velocity

    def decode(components, chunk):
        decodes.append(1)
        return real_decode(components, chunk)

    def velocity(components, x, cond, noise, step, *rest):
        steps.append(step.pass_index)
        return real_velocity(components, x, cond, noise, step, *rest)

    plugin.decode_chunk, plugin.velocity = decode, velocity
    try:
        child = engine.apply(session.id, "act", {"actions": acts[24:].tolist()})
        engine.run(child)
    finally:
        plugin.decode_chunk, plugin.velocity = real_decode, real_velocity
    assert child.doc.passes == [STEPS] * 3 and child.doc.parent_step == 2 * STEPS
    # Only the new chunk's steps ran; the one before was decoded once, for its last frame.
    assert steps == [2] * STEPS and len(decodes) == 1
    assert torch.equal(engine.final_latents(child), rollout(engine, acts))


@pytest.mark.parametrize(
    ("request_", "field", "says"),
    [
        ({"actions": torch.zeros(5, 384).tolist()}, "actions", "12 rows"),
        ({}, "actions", "give the chunk's actions"),
        ({"actions": torch.ones(12, 384).tolist()}, "actions", "gr1 actions lie in dims [0, 29)"),
    ],
)
def test_act_refuses_bad_actions_before_any_compute(engine: Engine, request_: dict, field: str, says: str) -> None:
    session = engine.create(
        "dreamdojo", {**PARAMS, "num_frames": 13}, variant="tiny", inputs={"image": frame(), "actions": actions(1)}
    )
    engine.run(session)
    with pytest.raises(InputError) as caught:
        engine.apply(session.id, "act", request_)
    assert caught.value.field == field and says in str(caught.value)


def test_edit_is_refused(engine: Engine) -> None:
    caps = engine.plugins.capabilities("dreamdojo")
    assert caps.extend and caps.rewind and not caps.edit
    assert "act" in engine.plugins.describe_model("dreamdojo")["operations"]
    session = engine.create(
        "dreamdojo", {**PARAMS, "num_frames": 13}, variant="tiny", inputs={"image": frame(), "actions": actions(1)}
    )
    engine.run(session)
    with pytest.raises((SessionError, InputError)):
        engine.apply(session.id, "edit", {"strength": 0.5, "overrides": {}})
