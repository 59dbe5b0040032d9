"""DreamDojo from the command line, files checked on disk: the newcomer's
``+model=dreamdojo`` (tiny variant, synthetic sample, says so), a dataset sample with its
ground truth, side-by-side and metrics, the evaluation sweep's summary, ``sessions act``
from the dataset's next actions, and a dataset's bad layout or sample in one line."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
from pathlib import Path

import pytest
from arc_dreamdojo.tiny_dataset import build_tiny_dataset

from arc_fabric_core.media.video import read_video
from arc_fabric_core.testing.cli import run_cli

pytestmark = pytest.mark.slow

FAST = ["steps=2"]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_dataset(tmp_path_factory.mktemp("gr1") / "gr1")


def run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    return run_cli(*args, cwd=tmp_path, env={"ARC_FABRIC_STORE": str(tmp_path / "store")})


def ok(tmp_path: Path, *args: str) -> str:
    res = run(tmp_path, *args)
    assert res.returncode == 0, res.stderr
    return res.stdout


def test_the_first_command_rolls_out_a_synthetic_sample_and_scores_it(tmp_path: Path) -> None:
    out = ok(tmp_path, "+model=dreamdojo", *FAST, f"output_dir={tmp_path / 'run'}")
    assert "synthetic sample" in out and "RANDOM weights" in out
    run_dir = tmp_path / "run"
    video = read_video(run_dir / "video.mp4")
    assert video.shape == (25, 32, 48, 3)
    assert read_video(run_dir / "ground_truth.mp4").shape == (25, 32, 48, 3)
    assert read_video(run_dir / "side_by_side.mp4").shape == (25, 32, 96, 3)
    report = json.loads((run_dir / "metrics.json").read_text())
    assert set(report["metrics"]) == {"piq_psnr", "piq_ssim", "piq_lpips"}
    assert report["random_backbone"] == ["piq_lpips"] and "RANDOM backbone" in out


def test_a_dataset_sample_an_evaluation_sweep_and_act(tmp_path: Path, dataset: Path) -> None:
    sweep = tmp_path / "sweep"
    out = ok(tmp_path, "-m", "+model=dreamdojo", *FAST, f"dataset={dataset}", "sample=0,3", f"output_dir={sweep}")
    assert "sample 3 of" in out
    with open(sweep / "sweep.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["sample"] for r in rows] == ["0", "3"]
    summary = json.loads((sweep / "sweep_summary.json").read_text())
    psnr = [float(r["piq_psnr"]) for r in rows]
    assert summary["jobs"] == 2 and summary["mean"]["piq_psnr"] == pytest.approx(sum(psnr) / 2)
    for job in ("0", "1"):
        for name in ("video.mp4", "ground_truth.mp4", "side_by_side.mp4", "metrics.json"):
            assert (sweep / job / name).is_file(), (job, name)

    parent = rows[1]["session"]
    out = ok(tmp_path, "sessions", "act", parent, "--from-dataset")
    child = next(line.split()[1] for line in out.splitlines() if line.startswith("act: "))
    assert f"act: {child} from {parent}, chunk 2 (2 steps)" in out
    assert read_video(tmp_path / "store" / child / "video.mp4").shape[0] == 37


def test_a_folder_not_in_the_layout_and_a_sample_out_of_range_are_one_line(tmp_path: Path, dataset: Path) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(dataset, broken)
    (broken / "meta" / "tasks.jsonl").unlink()
    res = run(tmp_path, "+model=dreamdojo", f"dataset={broken}")
    assert res.returncode == 2 and "error: dataset:" in res.stderr and "meta/tasks.jsonl" in res.stderr
    res = run(tmp_path, "+model=dreamdojo", f"dataset={dataset}", "sample=99")
    assert res.returncode == 2 and "error: sample: sample 99 is out of range" in res.stderr
    assert not (tmp_path / "store").exists() or not any((tmp_path / "store").iterdir())
