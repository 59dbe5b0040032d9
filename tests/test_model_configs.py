"""Every model's Hydra config is derived from its parameter schema: a plugin needs no YAML
for `+model=NAME key=value`, and one that ships a YAML adds to the derived config."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import Field

import arc_fabric_core.dispatch.plugins as plugins_module
from arc_fabric_core.cli.main import CONF_DIR
from arc_fabric_core.cli.model_configs import derived_node, register_model_configs
from arc_fabric_core.contract.hookspecs import hookimpl
from arc_fabric_core.contract.models import LatentSpace, ModelSpec, VariantSpec
from arc_fabric_core.contract.params import GenerationParams
from arc_fabric_core.dispatch.plugins import Plugins


class Params(GenerationParams):
    rings: int = Field(4, ge=1)
    device: str = "here"  # a name the primary config already has


SPACE = LatentSpace(family="rgb", channels=3, temporal_compression=1, spatial_compression=1)


class Models:
    def __init__(self, searchpath: list[str]) -> None:
        self.searchpath = searchpath

    @hookimpl
    def arc_register_models(self, register: Any) -> None:
        for name in ("plain", "extended", "old_style"):
            register(ModelSpec(name, "", Params, SPACE, (VariantSpec("default", ""),), needs_weights=False))

    @hookimpl
    def arc_config_searchpath(self) -> list[str]:
        return self.searchpath


@pytest.fixture
def compose(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    from hydra import compose, initialize_config_dir
    from hydra.core.config_store import ConfigStore
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import OmegaConf

    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "extended.yaml").write_text(
        "# @package _global_\ndefaults:\n  - /arc_model/extended\n  - _self_\nmodel:\n  variant: default\nlabel: x\n"
    )
    (tmp_path / "model" / "old_style.yaml").write_text("# @package model\nname: old_style\nvariant: auto\n")
    plugins = Plugins(load_entrypoints=False)
    plugins.register(Models([f"file://{tmp_path}"]), name="models")
    monkeypatch.setattr(plugins_module, "_plugins", plugins)  # what Hydra's search-path plugin asks
    before = dict(ConfigStore.instance().repo)
    register_model_configs(plugins, dict(OmegaConf.load(CONF_DIR / "config.yaml")))
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        yield compose
    GlobalHydra.instance().clear()
    ConfigStore.instance().repo = before


def test_a_plugin_parameter_is_a_key_of_its_own(compose: Any) -> None:
    cfg = compose("config", overrides=["+model=plain", "rings=3", "model.params.rings=5", "steps=2"])
    assert cfg.model.name == "plain" and cfg.model.variant == "auto" and cfg.model.weights is None
    assert cfg.rings == 3 and cfg.model.params.rings == 5 and cfg.steps == 2
    # A field named like one of the core's keys is only under model.params: the core's stays.
    assert cfg.device == "auto" and "device" in cfg.model.params


def test_a_shipped_yaml_adds_to_the_derived_config(compose: Any) -> None:
    cfg = compose("config", overrides=["+model=extended", "rings=7", "label=y"])
    assert cfg.rings == 7 and cfg.label == "y" and cfg.model.variant == "default"


def test_a_yaml_not_starting_from_the_derived_config_is_said(capsys: pytest.CaptureFixture[str], compose: Any) -> None:
    # The fixture registered the configs (capsys first, so it hears that): the old-style YAML was reported.
    err = capsys.readouterr().err
    assert "model/old_style.yaml does not start from the derived config" in err
    assert "model/extended.yaml" not in err and "model/plain.yaml" not in err


def test_derived_node_has_every_own_field_and_none_of_the_shared() -> None:
    node = derived_node("m", Params, reserved={"device"})
    assert node == {
        "model": {"name": "m", "variant": "auto", "weights": None, "params": {"rings": None, "device": None}},
        "rings": None,
    }
