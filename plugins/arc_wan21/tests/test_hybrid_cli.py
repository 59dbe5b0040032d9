"""Hybrid schedules from the command line: every shipped Wan config on tiny stand-ins,
a sweep, forks that hand the rest to another model, and refusals before compute."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from arc_fabric_core.media.video import read_video
from arc_fabric_core.testing.cli import run_cli as cli

pytestmark = pytest.mark.slow

SMALL = ["num_frames=9", "height=32", "width=32", "steps=6", "prompt=a fox"]
WAN_SCHEDULES = ["hybrid_wan_1.3b_14b", "hybrid_wan_14b_1.3b", "hybrid_wan_sandwich"]


def docs(cwd: Path) -> list[dict]:
    root = cwd / "outputs" / "sessions"
    return sorted((json.loads((d / "session.json").read_text()) for d in root.iterdir()), key=lambda d: d["created_at"])


def test_every_shipped_wan_hybrid_runs_in_one_sweep(tmp_path: Path) -> None:
    res = cli("-m", "+model=wan21", f"+schedule={','.join(WAN_SCHEDULES)}", *SMALL, "output_dir=out", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert res.stdout.count("tiny stand-in") >= 6  # each real stage said it runs on random weights
    for job in range(3):
        assert read_video(tmp_path / "out" / str(job) / "video.mp4").shape == (9, 32, 32, 3)
    sessions = docs(tmp_path)
    assert [d["schedule_name"] for d in sessions] == WAN_SCHEDULES
    plans = [[(s["model"]["variant"], s["end_step"]) for s in d["stages"]] for d in sessions]
    assert plans[0] == [("tiny", 2), ("tiny-14b", 6)]  # 0.4 of 6 steps
    assert plans[1][0][0] == "tiny-14b" and plans[1][1] == ("tiny", 6)  # while t >= 900
    assert plans[2] == [("tiny-14b", 2), ("tiny", 5), ("tiny-14b", 6)]
    # One process: the two tiny models loaded once for the three jobs.
    assert res.stdout.count("stage 0:") == 3


def test_boundary_override_and_fork_hand_off(tmp_path: Path) -> None:
    res = cli("+model=wan21", "+schedule=hybrid_wan_1.3b_14b", "schedule.boundary=0.5", *SMALL, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "stage 0: wan21/tiny steps 0..3" in res.stdout and "stage 1: wan21/tiny-14b steps 3..6" in res.stdout
    (parent,) = docs(tmp_path)
    assert 3 in [c["step"] for c in parent["checkpoints"]]

    # Fork at the hand-off, giving the rest back to the small model.
    res = cli("sessions", "fork", parent["id"], "--step", "3", "--stage", "1=wan21/tiny", "--no-video", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    child = next(d for d in docs(tmp_path) if d["parent"] == parent["id"])
    assert [s["model"]["variant"] for s in child["stages"]] == ["tiny", "tiny"]
    assert child["status"] == "completed"

    # Show lists the stages.
    res = cli("sessions", "show", parent["id"], cwd=tmp_path)
    assert "stage 1   wan21/tiny-14b steps 3..6" in res.stdout, res.stdout

    # A plain session hands its last steps to the large model.
    res = cli("+model=wan21", *SMALL, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    plain = docs(tmp_path)[-1]
    res = cli(
        "sessions", "fork", plain["id"], "--step", "4", "--hand-off", "wan21/tiny-14b", "--no-video", cwd=tmp_path
    )
    assert res.returncode == 0, res.stderr
    handed = docs(tmp_path)[-1]
    assert [(s["model"]["variant"], s["end_step"]) for s in handed["stages"]] == [("tiny", 4), ("tiny-14b", 6)]


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["schedule.boundary=1.5"], "error: schedule: fraction boundaries must rise strictly within (0, 1)"),
        (["schedule.stages.1.variant=huge"], "error: model.variant: unknown variant 'huge' of wan21"),
        (["schedule.tiny=false"], "error: model.weights: variant '1.3b' of wan21 needs a local checkpoint"),
        (["schedule.unit=noise"], "error: schedule.unit:"),
    ],
)
def test_bad_schedules_are_refused_before_compute(tmp_path: Path, args: list[str], says: str) -> None:
    res = cli("+model=wan21", "+schedule=hybrid_wan_1.3b_14b", *args, *SMALL, cwd=tmp_path)
    assert res.returncode == 2, res.stdout + res.stderr
    assert says in res.stderr, res.stderr
    assert "Traceback" not in res.stderr
    assert not (tmp_path / "outputs" / "sessions").exists() or not any((tmp_path / "outputs" / "sessions").iterdir())
