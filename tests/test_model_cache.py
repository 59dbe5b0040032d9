"""The model cache on a fake multi-GPU box: placement, LRU eviction that really frees,
holds, pinning, the CPU tier, visible states — and sessions run through it."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import torch

from arc_fabric_core.contract.hookspecs import hookimpl
from arc_fabric_core.dispatch.plugins import Plugins
from arc_fabric_core.engine.facade import Engine
from arc_fabric_core.runtime.devices import FakeProvider
from arc_fabric_core.runtime.model_cache import CacheEvent, ModelCache, ModelState, NoRoomError
from arc_fabric_core.store.files import SessionStore
from arc_fabric_core.testing.sized import MIB, SizedModels


class Clock:
    """Deterministic 'last used' times."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        self.now += 1.0
        return self.now


@pytest.fixture
def box(tmp_path: Path):
    """Two fake 10 MiB GPUs and three 6 MiB models: one model per GPU fits."""
    plugin = SizedModels(tmp_path / "weights", {"a": 6 * MIB, "b": 6 * MIB, "c": 6 * MIB})
    plugins = Plugins(load_entrypoints=False)
    plugins.register(plugin, name="sized")
    provider = FakeProvider(count=2, memory=10 * MIB)
    refs = {n: plugins.model(n).resolve("default", plugin.folder(n)) for n in "abc"}
    return plugins, provider, refs, plugin


def used(provider: FakeProvider) -> dict[str, int]:
    return {d.id: d.memory_used for d in provider.devices()}


def where(cache: ModelCache) -> dict[str, tuple[str, str | None]]:
    return {s.label.split("/")[0]: (s.state.value, s.device) for s in cache.states()}


def test_need_is_known_before_loading(box) -> None:
    plugins, provider, refs, plugin = box
    cache = ModelCache(plugins, provider=provider)
    assert cache.estimate_bytes(refs["a"]) == 6 * MIB  # from the safetensors header
    assert plugin.loads == []


def test_models_spread_over_devices_then_the_least_recently_used_goes(box) -> None:
    plugins, provider, refs, plugin = box
    cache = ModelCache(plugins, provider=provider, clock=Clock())
    cache.get(refs["a"])
    cache.get(refs["b"])
    assert where(cache) == {"a": ("warm", "cuda:0"), "b": ("warm", "cuda:1")}
    assert used(provider) == {"cuda:0": 6 * MIB, "cuda:1": 6 * MIB}
    cache.get(refs["a"])  # a is now the most recently used: b goes for c
    cache.get(refs["c"])
    assert where(cache) == {"a": ("warm", "cuda:0"), "b": ("cold", None), "c": ("warm", "cuda:1")}
    # The provider's numbers show b's memory really came back before c took it.
    assert used(provider) == {"cuda:0": 6 * MIB, "cuda:1": 6 * MIB}
    assert cache.events == [("load", "a/default"), ("load", "b/default"), ("evict", "b/default"), ("load", "c/default")]
    assert plugin.loads == ["a", "b", "c"] and cache.loads == 3


def test_a_model_someone_still_references_is_reported_not_freed(box, caplog: pytest.LogCaptureFixture) -> None:
    plugins, provider, refs, _ = box
    cache = ModelCache(plugins, provider=provider, clock=Clock())
    seen: list[CacheEvent] = []
    cache.subscribe(seen.append)
    leaked = cache.get(refs["a"])  # kept here: its tensors cannot be freed
    cache.get(refs["b"])
    with caplog.at_level("WARNING"), pytest.raises(NoRoomError, match="memory did not come back"):
        cache.get(refs["c"])
    assert "a/default left cuda:0 but only 0.0 MiB of its 6.0 MiB came back" in caplog.text
    assert [e.kind for e in seen][-2:] == ["evict", "release-unconfirmed"]
    assert used(provider)["cuda:0"] == 6 * MIB and where(cache)["c"] == ("cold", None)
    del leaked  # now it goes, and c fits
    cache.get(refs["c"])
    assert where(cache)["c"] == ("warm", "cuda:0")


def test_held_and_pinned_models_are_never_evicted(box) -> None:
    plugins, provider, refs, _ = box
    cache = ModelCache(plugins, provider=provider, clock=Clock())
    cache.get(refs["a"], holder="session-1")
    cache.get(refs["b"], holder="session-2")
    with pytest.raises(NoRoomError, match=r"c/default needs 6\.0 MiB") as err:
        cache.get(refs["c"])
    assert "held or pinned: a/default, b/default" in str(err.value)
    assert where(cache)["c"] == ("cold", None)  # a refused load leaves nothing behind
    assert [s.holders for s in cache.states() if s.label != "c/default"] == [1, 1]

    cache.pin(refs["a"])
    cache.let_go("session-1")
    cache.let_go("session-2")
    cache.get(refs["a"])  # a is the most recent, b the least: but a is pinned anyway
    cache.get(refs["b"])  # now b is the most recent; a (older) is pinned, so b goes
    cache.get(refs["c"])
    assert where(cache) == {"a": ("warm", "cuda:0"), "b": ("cold", None), "c": ("warm", "cuda:1")}
    assert [s.pinned for s in cache.states()] == [True, False, False]


def test_a_holder_moving_to_its_next_model_lets_go_of_the_last(box) -> None:
    plugins, provider, refs, _ = box
    cache = ModelCache(plugins, provider=provider, clock=Clock())
    cache.get(refs["a"], holder="s")
    cache.get(refs["b"], holder="other")
    cache.get(refs["c"], holder="s")  # a hybrid's next stage: its first model may go
    assert where(cache) == {"a": ("cold", None), "b": ("warm", "cuda:1"), "c": ("warm", "cuda:0")}


def test_an_explicit_device_evicts_there_only(box) -> None:
    plugins, provider, refs, _ = box
    cache = ModelCache(plugins, provider=provider, clock=Clock())
    cache.get(refs["a"])
    cache.get(refs["b"])
    cache.get(refs["c"], device="cuda:1")  # b is the newer of the two, but c must go on cuda:1
    assert where(cache) == {"a": ("warm", "cuda:0"), "b": ("cold", None), "c": ("warm", "cuda:1")}


def test_the_activation_margin_counts(tmp_path: Path) -> None:
    plugin = SizedModels(tmp_path, {"a": 6 * MIB}, margin=5 * MIB)
    plugins = Plugins(load_entrypoints=False)
    plugins.register(plugin, name="sized")
    cache = ModelCache(plugins, provider=FakeProvider(count=1, memory=10 * MIB))
    engine = Engine(SessionStore(tmp_path / "store"), plugins=plugins, device="auto", cache=cache)
    ref = plugins.model("a").resolve("default", plugin.folder("a"))
    with pytest.raises(NoRoomError, match=r"needs 11\.0 MiB"):  # 6 MiB weights + 5 MiB activations > 10 MiB
        engine.run(engine.create(ref, {}))
    assert plugin.loads == []


def test_the_cpu_tier_parks_evicted_models_and_brings_them_back_without_a_load(box) -> None:
    plugins, provider, refs, plugin = box
    cache = ModelCache(plugins, provider=provider, cpu_tier_bytes=8 * MIB, clock=Clock())
    cache.get(refs["a"])
    cache.get(refs["b"])
    cache.get(refs["c"])  # a goes to the tier: its GPU memory is free again
    assert where(cache) == {"a": ("offloaded", "cpu"), "b": ("warm", "cuda:1"), "c": ("warm", "cuda:0")}
    assert used(provider) == {"cuda:0": 6 * MIB, "cuda:1": 6 * MIB}
    cache.get(refs["a"])  # back by a copy; b (least recent) goes to the tier, which drops nothing: 6 MiB fits 8
    assert plugin.loads == ["a", "b", "c"]
    assert cache.events == [
        ("load", "a/default"),
        ("load", "b/default"),
        ("offload", "a/default"),
        ("load", "c/default"),
        ("offload", "b/default"),
        ("restore", "a/default"),
    ]
    assert where(cache)["a"] == ("warm", "cuda:1") and where(cache)["b"] == ("offloaded", "cpu")
    cache.get(refs["b"])  # b comes back for c, the least recent, which takes its place in the tier
    assert where(cache) == {"a": ("warm", "cuda:1"), "b": ("warm", "cuda:0"), "c": ("offloaded", "cpu")}
    assert plugin.loads == ["a", "b", "c"]


def test_states_are_visible_while_a_model_loads(tmp_path: Path) -> None:
    gate, entered = threading.Event(), threading.Event()

    class Slow(SizedModels):
        @hookimpl
        def arc_load(self, model, device):
            entered.set()
            gate.wait(10)
            return super().arc_load(model, device)

    plugin = Slow(tmp_path, {"a": MIB})
    plugins = Plugins(load_entrypoints=False)
    plugins.register(plugin, name="sized")
    cache = ModelCache(plugins, provider=FakeProvider(count=1, memory=10 * MIB))
    ref = plugins.model("a").resolve("default", plugin.folder("a"))
    seen: list[CacheEvent] = []
    cache.subscribe(seen.append)
    worker = threading.Thread(target=cache.get, args=(ref,))
    worker.start()
    assert entered.wait(10)
    assert [(s.state, s.device) for s in cache.states()] == [(ModelState.LOADING, None)]
    second = threading.Thread(target=cache.get, args=(ref,))  # waits for the load in flight
    second.start()
    gate.set()
    worker.join(10)
    second.join(10)
    assert [(s.state, s.device) for s in cache.states()] == [(ModelState.WARM, "cuda:0")]
    assert cache.loads == 1 and [e.kind for e in seen] == ["loading", "load"]
    cache.evict(ref)
    assert [e.kind for e in seen] == ["loading", "load", "evicting", "evict"]
    assert cache.states()[0].state is ModelState.COLD


def test_sessions_run_through_the_cache_on_a_fake_two_gpu_box(box, tmp_path: Path) -> None:
    """Three models on a box that holds two: each session's model is placed, the least
    recently used goes, the running session holds its model, and the videos do not depend
    on what was evicted."""
    plugins, provider, refs, _ = box
    cache = ModelCache(plugins, provider=provider, clock=Clock())
    engine = Engine(SessionStore(tmp_path / "store"), plugins=plugins, device="auto", cache=cache)
    held: list[int] = []
    listener = lambda event: held.append(sum(s.holders for s in cache.states()))  # noqa: E731
    latents = {}
    for name in ["a", "b", "c", "a"]:
        session = engine.run(engine.create(refs[name], {"seed": 1}), listeners=[listener])
        latents.setdefault(name, []).append(engine.final_latents(session))
    assert set(held) == {1}  # while a session runs, its model is held...
    assert sum(s.holders for s in cache.states()) == 0  # ...and let go when it stops
    assert cache.events == [
        ("load", "a/default"),
        ("load", "b/default"),
        ("evict", "a/default"),
        ("load", "c/default"),
        ("evict", "b/default"),
        ("load", "a/default"),
    ]
    assert torch.equal(latents["a"][0], latents["a"][1])


def test_a_model_asked_for_on_another_device_moves_there(box) -> None:
    plugins, provider, refs, plugin = box
    cache = ModelCache(plugins, provider=provider, clock=Clock())
    cache.get(refs["a"], device="cuda:0")
    cache.get(refs["a"], device="cuda:1")
    assert where(cache) == {"a": ("warm", "cuda:1")}
    assert used(provider) == {"cuda:0": 0, "cuda:1": 6 * MIB}
    assert cache.events == [("load", "a/default"), ("move", "a/default")] and plugin.loads == ["a"]
    cache.get(refs["a"])  # "auto": wherever it is warm
    assert cache.events[-1] == ("move", "a/default")
