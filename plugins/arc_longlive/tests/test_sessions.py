"""LongLive sessions through the engine, on the tiny checkpoint: the engine's block loop
equals LongLive's loop written out with full recompute; a session resumed after a crash
(mid-block, in a new engine) equals an uninterrupted one bit for bit, prompt switches
included; a switch changes only the blocks after it."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from arc_fabric_core.contract.errors import InputError, SessionError
from arc_fabric_core.engine.facade import Engine
from arc_fabric_core.kit.kv_cache import WindowPolicy
from arc_fabric_core.store.files import SessionStore
from arc_longlive.plugin import block_noise, levels
from arc_longlive.spec import BLOCK_FRAMES

SMALL = {"prompt": "a fox in the snow", "num_frames": 45, "height": 64, "width": 64, "seed": 3}  # 4 blocks


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    return Engine(SessionStore(tmp_path / "sessions"), device="cpu")


def run(engine: Engine, **params) -> torch.Tensor:
    session = engine.create("longlive", {**SMALL, **params}, variant="tiny")
    engine.run(session)
    return engine.final_latents(session)


def test_the_engine_runs_longlives_loop(engine: Engine) -> None:
    """LongLive's loop by hand — per block: 4 steps, x0 = x - sigma * flow, re-noise to the
    next level — with full block-causal recompute (no cache) in place of the plugin's cache."""
    session = engine.create("longlive", {**SMALL, "window_frames": 6, "sink_frames": 3}, variant="tiny")
    assert session.doc.passes == [4, 4, 4, 4] and session.doc.total_steps == 16
    engine.run(session)
    got = engine.final_latents(session)

    components = engine.load(session.ref, "cpu")
    params = session.params
    prompt = engine.open(session.id).doc  # conditioning is stored with the session
    cond, _ = engine.store.read_tensors(session.id, prompt.conditioning)
    sigmas = levels(params)
    policy = WindowPolicy(BLOCK_FRAMES, 6, 3)
    clean = torch.zeros(1, 16, 12, 8, 8)
    with torch.no_grad():
        for b in range(4):
            s, e = b * BLOCK_FRAMES, (b + 1) * BLOCK_FRAMES
            x = block_noise((1, 16, 3, 8, 8), params.seed, b, 0)
            for i in range(4):
                steps = torch.cat([torch.zeros(s), torch.full((3,), sigmas[i] * 1000)])
                everything = torch.cat([clean[:, :, :s], x], 2)
                flow = components.causal.reference_forward(everything, steps, cond["prompt_embeds.0"], policy)
                x0 = x - sigmas[i] * flow[:, :, s:]
                x = (
                    x0
                    if i == 3
                    else (1 - sigmas[i + 1]) * x0 + sigmas[i + 1] * block_noise(x0.shape, params.seed, b, i + 1)
                )
            clean[:, :, s:e] = x
    assert torch.allclose(got, clean, atol=1e-5, rtol=0), (got - clean).abs().max()


@pytest.mark.parametrize("until", [6, 8, 13])  # mid-block, at a block's end, in the block after the switch
def test_a_session_resumed_in_a_new_engine_equals_an_uninterrupted_one(tmp_path: Path, until: int) -> None:
    switch = {"prompts": ["a cat on a roof"], "switch_frames": [5]}  # takes over at block 2 (frame 6)
    store = SessionStore(tmp_path / "sessions")
    whole = run(Engine(store, device="cpu"), **switch)

    first = Engine(store, device="cpu")
    session = first.create("longlive", {**SMALL, **switch}, variant="tiny")
    first.run(session, until=until)
    second = Engine(SessionStore(tmp_path / "sessions"), device="cpu")  # a new process, no cache in memory
    resumed = second.open(session.id)
    second.run(resumed)
    assert torch.equal(second.final_latents(resumed), whole)


def test_a_prompt_switch_changes_only_the_blocks_after_it(engine: Engine) -> None:
    plain = run(engine)
    switched = run(engine, prompts=["a cat on a roof"], switch_frames=[6])  # block 2 on
    assert torch.equal(switched[:, :, :6], plain[:, :, :6])
    assert not torch.allclose(switched[:, :, 6:9], plain[:, :, 6:9], atol=1e-4)


def test_the_video_decodes_to_every_frame(engine: Engine) -> None:
    session = engine.create("longlive", SMALL, variant="tiny")
    engine.run(session)
    frames = engine.decode(session)
    assert frames.shape == (45, 64, 64, 3) and float(frames.min()) >= 0 and float(frames.max()) <= 1


@pytest.mark.parametrize(
    ("params", "field", "message"),
    [
        ({"num_frames": 40}, "num_frames", "12k-3"),
        ({"prompts": ["b"]}, "switch_frames", "one per entry of prompts"),
        ({"prompts": ["b"], "switch_frames": [20]}, "switch_frames", "increasing latent frames in 1..11"),
        ({"guidance": 5.0}, "guidance", "less than or equal to 1"),
        ({"window_frames": 4}, "window_frames", "at least a block and the sink"),
    ],
)
def test_bad_parameters_are_refused_before_any_compute(engine: Engine, params: dict, field: str, message: str) -> None:
    with pytest.raises(InputError) as err:
        engine.create("longlive", {**SMALL, **params}, variant="tiny")
    assert message in str(err.value) and err.value.field == field


def test_an_extension_equals_generating_the_longer_video_at_once(engine: Engine) -> None:
    short = engine.create("longlive", {**SMALL, "num_frames": 21}, variant="tiny")  # 2 blocks
    engine.run(short)
    longer = engine.extend(short.id, blocks=2)
    assert longer.doc.parent == short.id and longer.doc.operation == "extend" and longer.step_index == 8
    engine.run(longer)
    assert torch.equal(engine.final_latents(longer), run(engine))  # 4 blocks in one go
    assert engine.decode(longer).shape[0] == 45

    # With a new prompt: the switch lands on the first new block.
    switched = engine.extend(short.id, blocks=2, prompt="a cat on a roof")
    assert switched.params.switch_frames == [6]
    engine.run(switched)
    assert torch.equal(engine.final_latents(switched), run(engine, prompts=["a cat on a roof"], switch_frames=[6]))


def test_only_a_finished_autoregressive_session_extends(engine: Engine) -> None:
    session = engine.create("longlive", SMALL, variant="tiny")
    engine.run(session, until=5)
    with pytest.raises(SessionError, match="only a finished session extends"):
        engine.extend(session.id, blocks=1)
    with pytest.raises(InputError) as err:
        engine.extend(session.id, blocks=0)
    assert err.value.field == "blocks"
    engine.run(engine.open(session.id))
    with pytest.raises(InputError, match="at most 32 latent frames") as err:
        engine.extend(session.id, blocks=7)  # 12 + 21 latent frames > the tiny rotary table
    assert err.value.field == "num_frames"


def test_a_rewind_remakes_the_blocks_from_there_under_a_new_prompt(engine: Engine) -> None:
    session = engine.create("longlive", SMALL, variant="tiny")
    engine.run(session)
    rewound = engine.rewind(session.id, block=2, prompt="a cat on a roof")
    assert rewound.step_index == 8 and rewound.doc.parent == session.id
    engine.run(rewound)
    # What generating with that switch from the start gives, without remaking blocks 0 and 1.
    assert torch.equal(engine.final_latents(rewound), run(engine, prompts=["a cat on a roof"], switch_frames=[6]))
    with pytest.raises(InputError) as err:
        engine.rewind(session.id, block=4)
    assert err.value.field == "block" and "0..3" in err.value.message


def test_each_prompt_is_projected_once_per_layer_and_the_cache_parks_on_pause(engine: Engine) -> None:
    session = engine.create("longlive", {**SMALL, "prompts": ["a cat"], "switch_frames": [6]}, variant="tiny")
    components = engine.load(session.ref, "cpu")
    calls: list[int] = []
    handle = components.pipe.transformer.blocks[0].attn2.to_k.register_forward_hook(lambda *a: calls.append(1))
    try:
        engine.run(session, until=9)  # two blocks, then into the block after the switch
    finally:
        handle.remove()
    assert len(calls) == 2  # the first prompt, then the second; never per step
    kv = session.model_state["longlive.kv"]
    assert kv.device == torch.device("cpu") and kv.frames == [0, 1, 2, 3, 4, 5]
    assert session.model_state["longlive.cross"] == {}  # parked: remade on the next run


def test_the_memory_a_session_needs_counts_its_kv_cache() -> None:
    from arc_fabric_core.contract.models import ModelRef
    from arc_longlive.plugin import arc_activation_bytes
    from arc_longlive.spec import LONGLIVE

    real = ModelRef(LONGLIVE, LONGLIVE.variant("1.3b"), None)  # the need comes from params alone

    published = arc_activation_bytes(real, real.params({}))  # 477 frames at 480x832
    kv = 2 * 30 * 12 * 1560 * 1536 * 2  # LongLive's cache: 3.45 GB in bf16
    assert kv < published < kv + 12 * 2**30
    assert arc_activation_bytes(real, real.params({"window_frames": -1})) > published + 30 * kv / 12


def test_every_allowed_seed_draws_block_noise() -> None:
    # The largest seed a session takes (2^64 - 1) mixes past what a generator takes: it wraps.
    big = block_noise((1, 16, 3, 2, 2), 2**64 - 1, 5, 3)
    assert big.shape == (1, 16, 3, 2, 2) and torch.isfinite(big).all()
    # A seed whose mix fits draws what it always drew.
    drawn = torch.randn((1, 16, 3, 2, 2), generator=torch.Generator("cpu").manual_seed((7 * 1_000_003 + 1) * 16 + 2))
    assert torch.equal(block_noise((1, 16, 3, 2, 2), 7, 1, 2), drawn)
