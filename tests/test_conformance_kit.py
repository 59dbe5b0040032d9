"""The conformance kit itself: ready for pytest 10 under this repo's pytest settings, and its
failures say what was expected and what came."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import torch

from arc_fabric_core.testing.conformance import mismatch

ROOT = Path(__file__).resolve().parents[1]
TOY = ROOT / "examples" / "arc_toy"

# A plugin's suite on the toy model. {fixture} is the `plugins` override, as a plugin
# author writes it. Height 32 is valid for the toy: the kit must report it as accepted.
SUITE = """
import pytest

from arc_fabric_core.dispatch.plugins import Plugins
from arc_fabric_core.testing import PluginConformance


class TestToy(PluginConformance):
    model = "toy"
    variant = "default"
    params = {{"num_frames": 4, "height": 16, "width": 16, "steps": 4, "prompt": "bands"}}
    bad_params = [({{"height": 12}}, "height"), ({{"height": 32}}, "height")]

    @pytest.fixture(scope="class")
{fixture}
        from arc_toy import plugin

        plugins = Plugins(load_entrypoints=False)
        plugins.register(plugin, name="toy")
        return plugins
"""
AS_CLASSMETHOD = "    @classmethod\n    def plugins(cls) -> Plugins:"
AS_INSTANCE_METHOD = "    def plugins(self) -> Plugins:"


def run_suite(
    tmp_path: Path, fixture: str, tests: str = "registration or bad_input", conftest: str = ""
) -> subprocess.CompletedProcess[str]:
    """Run SUITE (its ``tests``, with ``conftest``) in a fresh pytest under this repo's own warning filters."""
    filters = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]["filterwarnings"]
    (tmp_path / "pyproject.toml").write_text(f"[tool.pytest.ini_options]\nfilterwarnings = {json.dumps(filters)}\n")
    (tmp_path / "test_suite.py").write_text(SUITE.format(fixture=fixture))
    if conftest:
        (tmp_path / "conftest.py").write_text(conftest)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TOY), os.environ.get("PYTHONPATH", "")])}
    env["ARC_FABRIC_CACHE"] = str(tmp_path / "cache")
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-rA", "-k", tests]
    return subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)


def test_mismatch_says_what_differs() -> None:
    zeros = torch.zeros(1, 2, 3)
    assert mismatch(zeros, torch.zeros(1, 2, 4)) == "expected (1, 2, 3) torch.float32, got (1, 2, 4) torch.float32"
    assert mismatch(zeros, zeros.double()) == "expected (1, 2, 3) torch.float32, got (1, 2, 3) torch.float64"
    off = zeros.clone()
    off[0, 1, 2] = 0.5
    assert mismatch(zeros, off) == "1 of 6 values differ (max |diff| 0.5), shape (1, 2, 3) torch.float32"


@pytest.mark.slow
def test_kit_runs_warning_free_and_names_what_was_accepted(tmp_path: Path) -> None:
    res = run_suite(tmp_path, AS_CLASSMETHOD)
    out = res.stdout + res.stderr
    assert "PytestRemovedIn10Warning" not in out, out[-4000:]
    assert "PASSED test_suite.py::TestToy::test_registration" in out, out[-4000:]
    assert "FAILED test_suite.py::TestToy::test_bad_input" in out, out[-4000:]
    # The valid override is named, with what happened instead of the refusal.
    assert "toy: expected an InputError for {'height': 32}, the session was created" in out, out[-4000:]


@pytest.mark.slow
def test_repo_settings_fail_a_class_fixture_written_as_instance_method(tmp_path: Path) -> None:
    """The repo ignores DeprecationWarning, of which pytest's deprecations are subclasses:
    its settings must still turn what pytest 10 removes into an error, not hide it."""
    res = run_suite(tmp_path, AS_INSTANCE_METHOD)
    out = res.stdout + res.stderr
    assert res.returncode != 0, out[-4000:]
    assert "ERROR test_suite.py::TestToy::test_registration" in out, out[-4000:]
    assert "PytestRemovedIn10Warning: Class-scoped fixtures defined as instance methods" in out, out[-4000:]


# Records what the kit builds its cache and engines with (in the suite's own process).
BUILT_SPY = """
import json
from pathlib import Path

from arc_fabric_core.jobs import runtime_setup

CALLS = []
for _name in ("build_cache", "build_engine"):
    def _spy(settings, *args, _original=getattr(runtime_setup, _name), _name=_name, **kw):
        store = [Path(settings.store_dir).name] if _name == "build_engine" else []  # a cache has no store
        CALLS.append([_name, settings.device, *store])
        return _original(settings, *args, **kw)

    setattr(runtime_setup, _name, _spy)


def pytest_sessionfinish(session):
    Path("built.json").write_text(json.dumps(CALLS))
"""


@pytest.mark.slow
def test_kit_builds_its_cache_and_engines_through_the_runtime(tmp_path: Path) -> None:
    res = run_suite(tmp_path, AS_CLASSMETHOD, tests="store_round_trip", conftest=BUILT_SPY)
    out = res.stdout + res.stderr
    assert "PASSED test_suite.py::TestToy::test_store_round_trip" in out, out[-4000:]
    built = json.loads((tmp_path / "built.json").read_text())
    # One cache for the class; the test's engine, and the one that reopens its store, over it.
    assert built == [["build_cache", "cpu"], ["build_engine", "cpu", "store"], ["build_engine", "cpu", "store"]]
