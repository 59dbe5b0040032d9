from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TOY = ROOT / "examples" / "arc_toy"
# The core's tests use the example plugin; it is imported from its folder, not installed.
if str(TOY) not in sys.path:
    sys.path.insert(0, str(TOY))


@pytest.fixture
def toy_plugins():
    """A plugin manager holding only the toy plugin (no entry points)."""
    from arc_fabric_core.plugins import Plugins
    from arc_toy import plugin

    plugins = Plugins(load_entrypoints=False)
    plugins.register(plugin, name="toy")
    return plugins


@pytest.fixture
def toy_engine(tmp_path: Path, toy_plugins):
    from arc_fabric_core.engine import Engine
    from arc_fabric_core.store import SessionStore

    return Engine(SessionStore(tmp_path / "store"), plugins=toy_plugins, device="cpu")
