"""Each registered model's Hydra config, derived from its parameter schema.

``+model=NAME`` selects the config group entry ``model/NAME``, which the core writes
for every installed model into Hydra's ConfigStore, so a plugin needs no YAML and no
Hydra knowledge: each field of the model's own parameter class is settable as
``key=value`` (as the shared ones, ``steps=8``), and also as ``model.params.key=value``.
``model.variant`` and ``model.weights`` pick the variant and checkpoint.

A plugin that wants to add something ships ``model/NAME.yaml`` on its search path
(``arc_config_searchpath``) starting from the derived config::

    # @package _global_
    defaults:
      - /arc_model/NAME
      - _self_
    model:
      variant: auto
    my_extra_key: 1

The derived config is then stored only as ``arc_model/NAME`` (Hydra would otherwise
match the two files by name, a deprecated behaviour). A YAML that does not start from
it still works, but only its own keys can be set; the CLI says so.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from importlib import resources
from pathlib import Path
from typing import Any

from arc_fabric_core.contract.params import GenerationParams

BASE_GROUP = "arc_model"


def own_fields(params: type[GenerationParams]) -> list[str]:
    """The fields a model adds to the shared generation parameters."""
    return [name for name in params.model_fields if name not in GenerationParams.model_fields]


def derived_node(
    name: str, params: type[GenerationParams], reserved: set[str], inputs: Iterable[str] = ()
) -> dict[str, Any]:
    """The config of model ``name``: its selection under ``model``, its own parameters at
    the top level (null = the model's or variant's default), and its inputs beside text
    under ``inputs`` (null = not given), so ``inputs.actions=PATH`` needs no ``+``.

    A field whose name the primary config already uses (``device``, ``metrics``...) is
    settable only as ``model.params.<field>``: at the top level it would take over the
    core's key.
    """
    fields = own_fields(params)
    node: dict[str, Any] = {
        "model": {"name": name, "variant": "auto", "weights": None, "params": dict.fromkeys(fields)},
    }
    node.update({field: None for field in fields if field not in reserved})
    if inputs:
        node["inputs"] = dict.fromkeys(inputs)
    return node


def _shipped_yaml(searchpath: list[str], name: str) -> str | None:
    """The plugin-shipped ``model/NAME.yaml`` on ``searchpath`` as text, if there is one."""
    for entry in searchpath:
        try:
            if entry.startswith("pkg://"):
                package = entry[len("pkg://") :].strip("/").replace("/", ".")
                file = resources.files(package).joinpath("model", f"{name}.yaml")
                if file.is_file():
                    return file.read_text()
            else:
                folder = Path(entry[len("file://") :] if entry.startswith("file://") else entry)
                file_path = folder / "model" / f"{name}.yaml"
                if file_path.is_file():
                    return file_path.read_text()
        except (ModuleNotFoundError, FileNotFoundError, NotADirectoryError, TypeError):
            continue
    return None


def shipped_keys(plugins: Any, name: str) -> set[str]:
    """The top-level keys a plugin's own ``model/NAME.yaml`` adds (DreamDojo's ``image``)."""
    text = _shipped_yaml(plugins.config_searchpath(), name)
    if text is None:
        return set()
    from omegaconf import OmegaConf

    node = OmegaConf.create(text)
    return {str(k) for k in node} - {"defaults", "model", "hydra"}  # type: ignore[union-attr]


def register_model_configs(plugins: Any, primary: Iterable[str]) -> None:
    """Write ``model/NAME`` (and ``arc_model/NAME``) into Hydra's ConfigStore for every
    installed model; ``primary`` are the primary config's keys (reserved)."""
    from hydra.core.config_store import ConfigStore

    store = ConfigStore.instance()
    searchpath = plugins.config_searchpath()
    reserved = set(primary) | {"model", "schedule", "hydra"}
    for name in plugins.model_names():
        spec = plugins.model(name)
        node = derived_node(name, spec.params, reserved, [i.name for i in spec.inputs])
        store.store(group=BASE_GROUP, name=name, node=node, package="_global_", provider="arc-fabric")
        shipped = _shipped_yaml(searchpath, name)
        if shipped is None:
            store.store(group="model", name=name, node=node, package="_global_", provider="arc-fabric")
        elif f"/{BASE_GROUP}/{name}" not in shipped:
            sys.stderr.write(
                f"arc_fabric: the plugin's model/{name}.yaml does not start from the derived config "
                f"(add 'defaults: [/{BASE_GROUP}/{name}, _self_]' to it); only the keys it lists can be set\n"
            )
