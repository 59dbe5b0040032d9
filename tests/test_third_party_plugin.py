"""A plugin installed from a folder outside the core appears and runs, with no core change."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from arc_fabric_core.media.video import read_video

pytestmark = pytest.mark.slow

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "arc_toy"


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    target = tmp_path_factory.mktemp("site")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(target),
            str(EXAMPLE),
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert not (target / "arc_toy" / "conf").exists()  # its Hydra config is derived by the core
    env = {**os.environ, "PYTHONPATH": str(target)}
    env.pop("ARC_FABRIC_LOAD_PLUGINS", None)
    return env


def cli(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "arc_fabric_core", *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=300
    )


def test_installed_plugin_is_listed(installed: dict[str, str], tmp_path: Path) -> None:
    res = cli("plugins", env=installed, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    listing = {p["name"]: p for p in json.loads(res.stdout)}
    assert listing["toy"]["package"] == "arc-toy"
    assert [m["name"] for m in listing["toy"]["models"]] == ["toy"]


def test_installed_plugin_runs_from_the_cli(installed: dict[str, str], tmp_path: Path) -> None:
    out = tmp_path / "run"
    res = cli(
        "+model=toy",
        "num_frames=6",
        "height=32",
        "width=48",
        "steps=5",
        "grain=0.2",  # a parameter of the plugin's own, spelt as the shared ones
        f"output_dir={out}",
        env=installed,
        cwd=tmp_path,
    )
    assert res.returncode == 0, res.stderr
    frames = read_video(out / "video.mp4")
    assert frames.shape == (6, 32, 48, 3)
    # The toy converges to colour bands: a real picture, not noise.
    assert frames.std() > 10


def test_installed_plugin_allow_list(installed: dict[str, str], tmp_path: Path) -> None:
    res = cli("plugins", env={**installed, "ARC_FABRIC_LOAD_PLUGINS": "toy"}, cwd=tmp_path)
    assert [p["name"] for p in json.loads(res.stdout)] == ["toy"]
