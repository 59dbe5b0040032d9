from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TOY = ROOT / "examples" / "arc_toy"
# The core's tests use the example plugin; it is imported from its folder, not installed.
if str(TOY) not in sys.path:
    sys.path.insert(0, str(TOY))
# Test-only plugins (blocks_plugin, stall_plugin) import from this folder.
if str(ROOT / "tests") not in sys.path:
    sys.path.insert(0, str(ROOT / "tests"))

from ray_support import ray_cluster  # noqa: E402, F401 - the local two-node Ray cluster fixture


@pytest.fixture
def toy_plugins():
    """A plugin manager holding only the toy plugin (no entry points)."""
    from arc_fabric_core.dispatch.plugins import Plugins
    from arc_toy import plugin

    plugins = Plugins(load_entrypoints=False)
    plugins.register(plugin, name="toy")
    return plugins


@pytest.fixture
def toy_engine(tmp_path: Path, toy_plugins):
    from arc_fabric_core.engine.facade import Engine
    from arc_fabric_core.store.files import SessionStore

    return Engine(SessionStore(tmp_path / "store"), plugins=toy_plugins, device="cpu")


@pytest.fixture(scope="session")
def toy_env(tmp_path_factory: pytest.TempPathFactory):
    """The toy plugin in its own venv, layered on a base venv holding torch: the real
    per-plugin setup, built once per session (about three minutes; the base is ~5.5 GB, so
    it is deleted when the session ends)."""
    import shutil

    from arc_fabric_core.runtime.envs import create_env, ensure_base

    root = tmp_path_factory.mktemp("envs")
    ensure_base(root)
    yield create_env("toy", root=root)
    shutil.rmtree(root, ignore_errors=True)
