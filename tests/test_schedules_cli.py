"""The shipped schedule configs from the command line, across plugins: the LTX hybrid
runs on its tiny stand-ins, and a Wan stage with an LTX stage is refused before compute."""

from __future__ import annotations

from pathlib import Path

import pytest

from arc_fabric_core.dispatch.plugins import get_plugins
from arc_fabric_core.media.video import read_video
from arc_fabric_core.testing.cli import run_cli

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not {"wan21", "ltx"} <= set(get_plugins().model_names()), reason="needs the wan21 and ltx plugins installed"
    ),
]


def test_ltx_hybrid_runs_on_tiny_stand_ins(tmp_path: Path) -> None:
    res = run_cli("+model=ltx", "+schedule=hybrid_ltx_2b_13b", "output_dir=out", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "tiny stand-in 'tiny'" in res.stdout and "tiny stand-in 'tiny-13b'" in res.stdout
    assert "stage 1: ltx/tiny-13b" in res.stdout
    assert read_video(tmp_path / "out" / "video.mp4").shape[0] >= 1


def test_wan_stage_with_ltx_stage_is_refused_before_compute(tmp_path: Path) -> None:
    overrides = ["schedule.stages.1.model=ltx", "schedule.stages.1.variant=tiny"]
    res = run_cli("+model=wan21", "+schedule=hybrid_wan_1.3b_14b", *overrides, cwd=tmp_path)
    assert res.returncode == 2, res.stdout + res.stderr
    assert "error: schedule.stages: stage 1 (ltx/" in res.stderr and "another latent space" in res.stderr
    assert "wan-vae 16ch" in res.stderr
    assert not (tmp_path / "outputs" / "sessions").exists() or not any((tmp_path / "outputs" / "sessions").iterdir())
