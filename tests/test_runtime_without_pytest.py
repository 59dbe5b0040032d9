"""Run time never needs the test kit: with pytest absent, every runtime module of the core
and of each shipped plugin imports, and every tiny checkpoint builds into an empty cache.

A plain ``pip install ./ ./plugins/arc_wan21`` has no pytest, and the tiny checkpoints are
what a first ``python -m arc_fabric_core +model=wan21`` builds, so both must work without it.
The check runs in a fresh interpreter: this one has pytest (and the kit) loaded already.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
# Source folders, so that the check runs whether or not each plugin is installed here.
PACKAGE_ROOTS = [ROOT / "plugins" / name for name in ("arc_wan21", "arc_ltx", "arc_longlive")]
PACKAGE_ROOTS.append(ROOT / "examples" / "arc_toy")

# Run in the child. pytest is made unimportable by a finder in front of all others, so
# that `import pytest` fails as it does where pytest was never installed.
CHILD = r"""
import importlib
import importlib.abc
import json
import pkgutil
import sys


class NoPytest(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in ("pytest", "_pytest"):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


sys.meta_path.insert(0, NoPytest())
try:
    import pytest  # noqa: F401
except ModuleNotFoundError:
    pass
else:
    raise SystemExit("the pytest blocker did not work: the check would prove nothing")

PACKAGES = ["arc_fabric_core", "hydra_plugins.arc_fabric_searchpath", "arc_wan21", "arc_ltx", "arc_longlive", "arc_toy"]
imported = []
for package in PACKAGES:
    root = importlib.import_module(package)
    imported.append(package)
    for info in pkgutil.walk_packages(getattr(root, "__path__", []), prefix=package + "."):
        # The test kit is meant for pytest; __main__ would run the CLI.
        if info.name.startswith("arc_fabric_core.testing") or info.name.endswith(".__main__"):
            continue
        importlib.import_module(info.name)
        imported.append(info.name)

from arc_longlive.tiny import ensure_tiny_checkpoint as longlive
from arc_ltx.tiny import ensure_tiny_checkpoint as ltx, ensure_tiny_upsampler as ltx_upsampler
from arc_wan21.tiny import ensure_tiny_checkpoint as wan21

built = {
    "wan21": wan21(),
    "wan21-large": wan21(large=True),
    "ltx": ltx(),
    "ltx-large": ltx(large=True),
    "ltx-upsampler": ltx_upsampler(),
    "longlive": longlive(),
}
loaded = sorted(name for name in sys.modules if name.startswith(("pytest", "_pytest", "arc_fabric_core.testing")))
print(json.dumps({"imported": imported, "built": {k: str(v) for k, v in built.items()}, "loaded": loaded}))
"""


def test_runtime_imports_and_tiny_builds_without_pytest(tmp_path: Path) -> None:
    cache = tmp_path / "cache"  # empty: every tiny checkpoint is built, none reused
    pythonpath = [str(p) for p in PACKAGE_ROOTS] + [p for p in [os.environ.get("PYTHONPATH")] if p]
    env = {**os.environ, "ARC_FABRIC_CACHE": str(cache), "PYTHONPATH": os.pathsep.join(pythonpath)}
    res = subprocess.run(
        [sys.executable, "-c", CHILD], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600
    )
    assert res.returncode == 0, f"runtime code needs pytest (or failed without it):\n{res.stderr[-4000:]}"
    report = json.loads(res.stdout.strip().splitlines()[-1])

    assert report["loaded"] == [], f"expected no pytest / test-kit module at run time, got {report['loaded']}"
    imported = set(report["imported"])
    expected = {
        "arc_fabric_core.cli.main",
        "arc_fabric_core.server",
        "arc_wan21.tiny",
        "arc_ltx.tiny",
        "arc_longlive.tiny",
    }
    assert expected <= imported, f"expected these among the imported modules, missing {sorted(expected - imported)}"
    assert not any(m.startswith("arc_fabric_core.testing") for m in imported)
    for name, folder in report["built"].items():
        path = Path(folder)
        assert path.parent == cache / "tiny", f"{name}: expected a folder under {cache / 'tiny'}, got {path}"
        assert any(path.rglob("*.safetensors")), f"{name}: expected weights (*.safetensors) in {path}, found none"
