"""The step caches without a real model: the block-stack control, each policy's arithmetic
on a stand-in transformer, the plugin's registration and the checks made before a model
loads. (On the tiny Wan, end to end: plugins/arc_wan21/tests/test_step_caches.py.)"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from arc_fabric_core.contract.errors import ArcFabricError, InputError
from arc_fabric_core.contract.hookspecs import hookimpl
from arc_fabric_core.contract.schedule import StepContext
from arc_fabric_core.contract.speed import FirstBlockCache, MagCache, TaylorSeer
from arc_fabric_core.engine.facade import Engine
from arc_fabric_core.runtime.step_caches import blocks
from arc_fabric_core.runtime.step_caches import plugin as caches
from arc_fabric_core.runtime.step_caches.policies import policy_for
from arc_fabric_core.store.files import SessionStore

TOY = {"num_frames": 2, "height": 8, "width": 8, "steps": 4, "seed": 5}


class Shift(nn.Module):
    """A block adding ``scale * amount`` (the amount set by the test, step by step)."""

    def __init__(self, scale: float) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(scale))
        self.amount = 0.0
        self.calls = 0

    def forward(self, hidden_states: torch.Tensor, extra: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return hidden_states + self.scale * self.amount + 0 * extra


class Stack(nn.Module):
    """A stand-in transformer: diffusers' loop over ``self.blocks``."""

    def __init__(self, n: int = 3) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(Shift(float(i + 1)) for i in range(n))

    def set_amount(self, amount: float) -> None:
        for block in self.blocks:
            block.amount = amount

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            h = block(h, h)
        return h


def step(index: int, total: int, state: dict) -> StepContext:
    return StepContext(index=index, total=total, timestep=torch.tensor(0.0), sigma=None, checkpointed=state)


def run_step(model: Stack, settings, index: int, total: int, state: dict, h: torch.Tensor, calls: int = 1):
    """One denoising step's transformer calls under ``settings``; the outputs and the controller."""
    stack = blocks.install(model)
    controller = blocks.StackController(policy_for(settings, step(index, total, state)))
    blocks.activate(stack, controller)
    try:
        with torch.no_grad():
            outs = [model(h) for _ in range(calls)]
    finally:
        blocks.activate(stack, None)
    return outs, controller


# ---------------------------------------------------------------- the block stack


def test_install_keeps_names_and_blocks_and_is_idempotent() -> None:
    model = Stack()
    keys, text = list(model.state_dict()), repr(model)
    originals = list(model.blocks)
    stack = blocks.install(model)
    assert blocks.install(model) is stack and type(stack).__mro__.count(blocks._ControlledStack) == 1
    assert list(model.state_dict()) == keys and repr(model) == text
    assert list(model.blocks) == originals and len(model.blocks) == 3 and model.blocks[1] is originals[1]
    h = torch.ones(2)
    assert torch.equal(model(h), h + 6 * 0)  # amounts 0: the plain run


def test_a_transformer_without_a_block_list_is_a_clear_error() -> None:
    with pytest.raises(InputError) as info:
        blocks.install(nn.Linear(2, 2), "cache=fbc on toy/tiny")
    assert info.value.field == "cache" and "toy/tiny" in str(info.value) and "blocks" in str(info.value)
    one = nn.Module()
    one.blocks = nn.ModuleList([nn.Identity()])
    assert blocks.block_list(one) is None  # one block: nothing to skip


def test_first_block_cache_reuses_the_tail_residual() -> None:
    model, state, h = Stack(), {}, torch.zeros(4)
    settings = FirstBlockCache(threshold=0.2, warmup=1)
    model.set_amount(1.0)
    (out,), ran = run_step(model, settings, 0, 4, state, h)
    assert torch.equal(out, h + 6.0) and (ran.ran, ran.skipped) == (1, 0)
    model.set_amount(1.1)  # block 0's residual changed by 10% < 20%: the others are skipped
    (out,), skipped = run_step(model, settings, 1, 4, state, h)
    assert (skipped.ran, skipped.skipped) == (0, 1)
    assert torch.allclose(out, h + 1.1 + 5.0)  # block 0 now, blocks 1 and 2 as at step 0
    assert [b.calls for b in model.blocks] == [2, 1, 1]
    model.set_amount(1.5)  # 50% since the last computed step: everything runs
    (out,), again = run_step(model, settings, 2, 4, state, h)
    assert (again.ran, again.skipped) == (1, 0) and torch.allclose(out, h + 9.0)


def test_first_block_cache_keeps_each_call_apart() -> None:
    model, state = Stack(), {}
    settings = FirstBlockCache(threshold=0.2, warmup=1)
    model.set_amount(1.0)
    run_step(model, settings, 0, 4, state, torch.zeros(4), calls=2)
    assert {k for k in state if k.startswith("stepcache.fbc.")} == {
        f"stepcache.fbc.c{c}.{w}" for c in (0, 1) for w in ("first", "tail")
    }


def test_magcache_skips_while_the_error_is_small_and_at_most_max_skips() -> None:
    model, state, h = Stack(), {}, torch.zeros(4)
    settings = MagCache(threshold=0.5, max_skips=2, retention=0.25, mag_ratios=[1.0, 1.0, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9])
    decisions = []
    for i in range(8):
        model.set_amount(float(i + 1))
        (out,), c = run_step(model, settings, i, 8, state, h)
        decisions.append(c.skipped)
        if c.skipped:
            assert torch.equal(out, h + state["stepcache.magcache.c0.residual"])
    # Steps 0 and 1 are the retention (a quarter of 8); then two skips at most in a row;
    # errors: 0.1, then 0.1 + 0.19 (both within 0.5).
    assert decisions == [0, 0, 1, 1, 0, 1, 1, 0]


def test_magcache_estimates_its_ratio_online() -> None:
    model, state, h = Stack(), {}, torch.zeros(4)
    settings = MagCache(threshold=0.3, max_skips=5, retention=0.5)
    for i, amount in enumerate([1.0, 2.0]):
        model.set_amount(amount)
        run_step(model, settings, i, 4, state, h)
    assert state["stepcache.magcache.c0.ratio"].item() == pytest.approx(2.0)  # |r_1| / |r_0|
    model.set_amount(3.0)
    (_,), c = run_step(model, settings, 2, 4, state, h)
    assert c.skipped == 0  # |1 - 2| > 0.3


def test_taylorseer_forecasts_a_linear_residual_exactly() -> None:
    model, state, h = Stack(), {}, torch.zeros(4)
    settings = TaylorSeer(interval=3, order=1, warmup=2, cooldown=1)
    skipped = []
    for i in range(9):
        model.set_amount(float(i))  # the stack's residual: 6 * i
        (out,), c = run_step(model, settings, i, 9, state, h)
        skipped.append(c.skipped)
        assert torch.allclose(out, h + 6.0 * i), i
    # Warmup 0, 1; then every third step since the last computed one; the last step runs.
    assert skipped == [0, 0, 1, 1, 0, 1, 1, 0, 0]


def test_taylorseer_order_zero_reuses_the_residual() -> None:
    model, state, h = Stack(), {}, torch.zeros(4)
    settings = TaylorSeer(interval=2, order=0, warmup=1, cooldown=0)
    for i in range(3):
        model.set_amount(float(i))
        (out,), c = run_step(model, settings, i, 3, state, h)
    assert c.skipped == 0
    model.set_amount(9.0)
    (out,), c = run_step(model, settings, 3, 5, state, h)
    assert c.skipped == 1 and torch.allclose(out, h + 12.0)  # step 2's residual


# ---------------------------------------------------------------- the plugin


@pytest.fixture
def cached_toy(toy_plugins):
    toy_plugins.register_builtin_caches()  # what loading the entry points does
    return toy_plugins


def test_describe_lists_the_caches(cached_toy) -> None:
    described = {p["name"]: p for p in cached_toy.describe()}
    # The core's own plugin is not listed (as the built-in operations are not); the caches
    # are listed with each model that takes them.
    assert "step_caches" not in described and described["toy"]["caches"] == []
    (toy,) = described["toy"]["models"]
    assert toy["caches"] == ["fbc", "magcache", "taylorseer"]
    assert set(cached_toy.caches()) == {"fbc", "magcache", "taylorseer"}
    assert cached_toy.caches()["fbc"][1] == "step_caches"


def test_a_cache_registered_twice_is_refused(cached_toy) -> None:
    class Again:
        @hookimpl
        def arc_register_caches(self, register):
            register(caches.CacheInfo("fbc", "another"))

    cached_toy.register(Again(), name="again")
    with pytest.raises(ArcFabricError, match="'fbc' is registered by both"):
        cached_toy.caches()


def test_a_cache_without_its_plugin_is_refused_before_anything_loads(tmp_path: Path, toy_plugins) -> None:
    engine = Engine(SessionStore(tmp_path), plugins=toy_plugins, device="cpu")
    with pytest.raises(InputError) as info:
        engine.create("toy", {**TOY, "cache": "fbc"})
    assert info.value.field == "cache" and "none loaded does" in str(info.value)
    assert not any(tmp_path.rglob("session.json"))


@pytest.mark.parametrize(
    ("cache", "field"),
    [("bogus", "cache"), ({"name": "fbc", "threshold": 2.0}, "cache.fbc.threshold"), ({"name": "x"}, "cache")],
)
def test_bad_cache_settings_name_the_cache(tmp_path: Path, cached_toy, cache, field) -> None:
    engine = Engine(SessionStore(tmp_path), plugins=cached_toy, device="cpu")
    with pytest.raises(InputError) as info:
        engine.create("toy", {**TOY, "cache": cache})
    assert info.value.field == field


def test_a_model_that_takes_no_cache_refuses_one(tmp_path: Path, cached_toy, monkeypatch) -> None:
    import dataclasses

    real = cached_toy.model
    refusing = dataclasses.replace(real("toy"), step_cache_refusal="its step writes a KV cache")
    monkeypatch.setattr(cached_toy, "model", lambda name: refusing if name == "toy" else real(name))
    engine = Engine(SessionStore(tmp_path), plugins=cached_toy, device="cpu")
    with pytest.raises(InputError) as info:
        engine.create("toy", {**TOY, "cache": "fbc"})
    assert info.value.field == "cache" and "takes no step cache: its step writes a KV cache" in str(info.value)
    assert not any(tmp_path.rglob("session.json"))


def test_a_model_without_a_transformer_is_a_clear_error(tmp_path: Path, cached_toy) -> None:
    engine = Engine(SessionStore(tmp_path), plugins=cached_toy, device="cpu")
    session = engine.create("toy", {**TOY, "cache": "fbc"})  # the toy's components hold no transformer
    with pytest.raises(InputError) as info:
        engine.run(session)
    assert info.value.field == "cache" and "toy" in str(info.value) and "without a cache" in str(info.value)


def test_without_a_cache_the_plugin_changes_nothing(tmp_path: Path, cached_toy, toy_plugins) -> None:
    engine = Engine(SessionStore(tmp_path), plugins=cached_toy, device="cpu")
    session = engine.create("toy", TOY)
    engine.run(session)
    doc = engine.store.load_doc(session.id)
    tensors, _ = engine.store.read_tensors(session.id, doc.checkpoints[-1])
    assert not [k for k in tensors if "stepcache" in k]
