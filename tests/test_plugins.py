"""Plugin discovery and dispatch: a stage reaches exactly the owning plugin."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from arc_fabric_core.contract.errors import ArcFabricError, UnknownModelError
from arc_fabric_core.contract.hookspecs import hookimpl
from arc_fabric_core.contract.models import ModelSpec
from arc_fabric_core.dispatch.plugins import Plugins
from arc_fabric_core.engine.facade import Engine
from arc_fabric_core.store.files import SessionStore
from arc_toy import plugin as toy


class Twin:
    """A second model-owning plugin: its stage impls must never run for 'toy'."""

    calls: list[str]

    def __init__(self) -> None:
        self.calls = []

    @hookimpl
    def arc_register_models(self, register: Callable[[ModelSpec], None]) -> None:
        from dataclasses import replace

        register(replace(toy.TOY, name="twin"))

    @hookimpl
    def arc_load(self, model, device):
        self.calls.append(f"load:{model.spec.name}")
        return {"device": device}

    @hookimpl
    def arc_denoise_step(self, latents, step, conditioning, params):
        self.calls.append("denoise")
        return toy.arc_denoise_step(latents, step, conditioning, params)

    arc_encode = staticmethod(toy.arc_encode)
    arc_schedule = staticmethod(toy.arc_schedule)
    arc_prepare_latents = staticmethod(toy.arc_prepare_latents)
    arc_decode = staticmethod(toy.arc_decode)


class Profiler:
    """A cross-cutting plugin: owns no model, wraps every model's steps."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    @hookimpl(wrapper=True)
    def arc_denoise_step(self, model, step):
        self.seen.append(f"{model.spec.name}:{step.index}")
        out = yield
        return out


def test_stage_reaches_only_the_owner_and_wrappers_see_all(tmp_path: Path) -> None:
    plugins = Plugins(load_entrypoints=False)
    plugins.register(toy, name="toy")
    twin, profiler = Twin(), Profiler()
    plugins.register(twin, name="twin")
    plugins.register(profiler, name="profiler")
    engine = Engine(SessionStore(tmp_path), plugins=plugins, device="cpu")
    params = {"num_frames": 2, "height": 8, "width": 8, "steps": 3}

    engine.run(engine.create("toy", params))
    assert twin.calls == []
    assert profiler.seen == ["toy:0", "toy:1", "toy:2"]

    engine.run(engine.create("twin", params))
    assert twin.calls == ["load:twin", "denoise", "denoise", "denoise"]
    assert profiler.seen[3:] == ["twin:0", "twin:1", "twin:2"]


def test_duplicate_model_names_are_refused() -> None:
    plugins = Plugins(load_entrypoints=False)
    plugins.register(toy, name="toy")

    class Clash:
        @hookimpl
        def arc_register_models(self, register):
            register(toy.TOY)

    plugins.register(Clash(), name="clash")
    with pytest.raises(ArcFabricError, match="registered by both"):
        plugins.model_names()


def test_missing_stage_is_reported_at_create(tmp_path: Path) -> None:
    class Half:
        @hookimpl
        def arc_register_models(self, register):
            from dataclasses import replace

            register(replace(toy.TOY, name="half"))

    plugins = Plugins(load_entrypoints=False)
    plugins.register(Half(), name="half")
    with pytest.raises(ArcFabricError, match="lacks arc_load"):
        Engine(SessionStore(tmp_path), plugins=plugins, device="cpu").create("half", {})


def test_unknown_model_lists_installed(toy_plugins: Plugins) -> None:
    with pytest.raises(UnknownModelError, match="installed models: toy"):
        toy_plugins.model("wan99")


def test_describe_is_json(toy_plugins: Plugins) -> None:
    listing = json.loads(json.dumps(toy_plugins.describe()))
    assert listing[0]["name"] == "toy"
    model = listing[0]["models"][0]
    assert model["name"] == "toy"
    assert model["params_schema"]["properties"]["steps"]["default"] == 8
    assert "arc_denoise_step" in listing[0]["hooks"]


def run_core(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    import os

    return subprocess.run(
        [sys.executable, "-m", "arc_fabric_core", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_allow_list_empty_loads_no_plugin() -> None:
    res = run_core("plugins", env={"ARC_FABRIC_LOAD_PLUGINS": ""})
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout) == []


def test_allow_list_names_plugins() -> None:
    res = run_core("plugins", env={"ARC_FABRIC_LOAD_PLUGINS": "wan21"})
    assert res.returncode == 0, res.stderr
    names = [p["name"] for p in json.loads(res.stdout)]
    assert names == ["wan21"]


def test_no_plugins_means_a_clear_error() -> None:
    res = run_core("+model=wan21", env={"ARC_FABRIC_LOAD_PLUGINS": ""})
    assert res.returncode == 2
    assert (
        res.stderr.strip()
        == "error: model: unknown model 'wan21'; installed models: none (install a plugin such as arc-wan21)"
    )


def test_trace_prints_hook_calls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.setenv("ARC_FABRIC_TRACE_PLUGINS", "1")
    plugins = Plugins(load_entrypoints=False)
    plugins.register(toy, name="toy")
    engine = Engine(SessionStore(tmp_path), plugins=plugins, device="cpu")
    engine.run(engine.create("toy", {"num_frames": 2, "height": 8, "width": 8, "steps": 2}))
    err = capsys.readouterr().err
    for hook in ("arc_register_models", "arc_load", "arc_encode", "arc_schedule", "arc_denoise_step"):
        assert hook in err


def test_hooks_are_documented() -> None:
    """Every hook's exact signature appears in the README's hook reference."""
    import inspect

    from arc_fabric_core.contract import hookspecs

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    names = [n for n in dir(hookspecs) if n.startswith("arc_")]
    assert len(names) >= 8
    for name in names:
        fn = getattr(hookspecs, name)
        params = ", ".join(inspect.signature(fn).parameters)
        assert f"{name}({params})" in readme, f"README lacks {name}({params})"


def test_third_party_hooks_get_torch_tensors(toy_plugins: Plugins, tmp_path: Path) -> None:
    engine = Engine(SessionStore(tmp_path), plugins=toy_plugins, device="cpu")
    s = engine.create("toy", {"num_frames": 2, "height": 8, "width": 8, "steps": 2})
    engine.run(s)
    assert isinstance(s.latents, torch.Tensor) and s.latents.dtype == torch.float32
