"""Metrics on a run and sweeps, from the command line: metrics.json beside the video and in
the session; the quality gate fires below its threshold and says so; a multirun leaves
sweep.csv (one row per job) and sweep.png; a bad metric is refused before any compute."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from arc_fabric_core.testing.cli import run_cli

pytest.importorskip("open_clip")
pytest.importorskip("matplotlib")
pytestmark = pytest.mark.slow

SMALL = ["+model=wan21", "num_frames=9", "height=32", "width=32", "steps=2"]
TINY_CLIP = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 8},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}


@pytest.fixture
def clip_config(tmp_path: Path) -> str:
    path = tmp_path / "tiny-clip.json"
    path.write_text(json.dumps(TINY_CLIP))
    return str(path)


def run(*args: str, cwd: Path):
    return run_cli(*args, cwd=cwd, env={"ARC_FABRIC_STORE": str(cwd / "store")})


def test_the_gate_flags_a_low_clip_score_and_the_report_lands_twice(tmp_path: Path, clip_config: str) -> None:
    metrics = ["metrics=[clip,temporal]", "metrics_allow_random=true", f"metrics_options.clip_model={clip_config}"]
    res = run(*SMALL, *metrics, f"output_dir={tmp_path / 'run'}", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "clip: " in res.stdout and "(RANDOM backbone: meaningless)" in res.stdout
    assert "quality gate: clip" in res.stdout and "this generation looks broken" in res.stdout
    report = json.loads((tmp_path / "run" / "metrics.json").read_text())
    (session,) = [p.name for p in (tmp_path / "store").iterdir()]
    assert json.loads((tmp_path / "store" / session / "metrics.json").read_text()) == report
    assert report["random_backbone"] == ["clip"] and report["gate"]["passed"] is False
    assert len(report["metrics"]["clip"]["per_frame"]) == 9 and len(report["metrics"]["temporal"]["per_frame"]) == 8
    # A gate set below the score passes, and says nothing.
    res = run(*SMALL, *metrics, "quality_gate.clip=-1", f"output_dir={tmp_path / 'ok'}", cwd=tmp_path)
    assert res.returncode == 0 and "quality gate" not in res.stdout
    assert json.loads((tmp_path / "ok" / "metrics.json").read_text())["gate"]["passed"] is True


def test_a_sweep_leaves_a_table_and_a_plot(tmp_path: Path, clip_config: str) -> None:
    res = run(
        "-m", *SMALL[:-1], "steps=2,3", "seed=0,1", "metrics=[clip,temporal]", "metrics_allow_random=true",
        f"metrics_options.clip_model={clip_config}", f"output_dir={tmp_path / 'sweep'}", cwd=tmp_path,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    with open(tmp_path / "sweep" / "sweep.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(r["steps"], r["seed"]) for r in rows] == [("2", "0"), ("2", "1"), ("3", "0"), ("3", "1")]
    assert all(float(r["seconds"]) > 0 and r["clip"] and r["temporal"] for r in rows)
    assert len({r["session"] for r in rows}) == 4
    png = (tmp_path / "sweep" / "sweep.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000


def test_a_parallel_sweep_with_the_joblib_launcher_has_every_job(tmp_path: Path) -> None:
    pytest.importorskip("hydra_plugins.hydra_joblib_launcher")
    res = run(
        "-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", *SMALL, "seed=0,1,2,3", "metrics=[temporal]",
        f"output_dir={tmp_path / 'sweep'}", cwd=tmp_path,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    with open(tmp_path / "sweep" / "sweep.csv") as f:
        rows = list(csv.DictReader(f))
    assert sorted(r["seed"] for r in rows) == ["0", "1", "2", "3"] and all(r["temporal"] for r in rows)


def test_a_bad_metric_is_refused_before_any_compute(tmp_path: Path) -> None:
    res = run(*SMALL, "metrics=[clap]", cwd=tmp_path)
    assert res.returncode == 2
    available = "clip, lpips, piq_lpips, piq_psnr, piq_ssim, psnr, ssim, temporal"  # piq_*: the DreamDojo plugin's
    assert f"error: metrics: unknown metric 'clap'; available: {available}" in res.stderr
    res = run(*SMALL, "metrics=[clip]", "metrics_options.clip_weights=/nope.pt", cwd=tmp_path)
    assert res.returncode == 2 and "error: clip_weights: /nope.pt is not a file" in res.stderr
    assert not (tmp_path / "store").exists()  # no session was created
