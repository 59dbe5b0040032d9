"""`python -m arc_fabric_core jobs ...` end to end: submit, cancel, work, list, bad input."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from arc_fabric_core.testing.cli import run_cli

pytestmark = pytest.mark.slow

SMALL = ["num_frames=9", "height=32", "width=32", "steps=3"]


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {"ARC_FABRIC_STORE": str(cwd / "store"), "ARC_FABRIC_QUEUE": str(cwd / "jobs.sqlite")}
    return run_cli("jobs", *args, cwd=cwd, env=env)


def test_queue_from_the_command_line(tmp_path: Path) -> None:
    assert "job 1: queued" in cli("submit", "generate", "model=wan21", *SMALL, cwd=tmp_path).stdout
    assert (
        "priority 5"
        in cli("submit", "generate", "model=wan21", *SMALL, "seed=3", "--priority", "5", cwd=tmp_path).stdout
    )
    cli("submit", "generate", "model=wan21", *SMALL, cwd=tmp_path)
    assert "job 3: cancelled" in cli("cancel", "3", cwd=tmp_path).stdout
    assert "queue paused" in cli("pause", cwd=tmp_path).stdout
    assert "0 jobs run; queue paused" in cli("work", cwd=tmp_path).stdout
    cli("unpause", cwd=tmp_path)
    out = cli("work", cwd=tmp_path).stdout
    assert out.index("job 2: succeeded") < out.index("job 1: succeeded")  # priority first
    jobs = {j["id"]: j for j in json.loads(cli("list", "--json", cwd=tmp_path).stdout)}
    assert [jobs[i]["state"] for i in (1, 2, 3)] == ["succeeded", "succeeded", "cancelled"]
    assert (tmp_path / "store" / jobs[1]["session_id"] / "latents.safetensors").is_file()

    # A fork of the first job's session, queued and run.
    cli("submit", "fork", f"session={jobs[1]['session_id']}", "step=1", "prompt=a wolf", cwd=tmp_path)
    assert "job 4: succeeded" in cli("work", cwd=tmp_path).stdout

    # A shipped hybrid schedule, its hand-off moved.
    cli("submit", "generate", "model=wan21", "schedule=hybrid_wan_1.3b_14b", "boundary=0.5", *SMALL, cwd=tmp_path)
    assert "job 5: succeeded" in cli("work", cwd=tmp_path).stdout
    job = next(j for j in json.loads(cli("list", "--json", cwd=tmp_path).stdout) if j["id"] == 5)
    doc = json.loads((tmp_path / "store" / job["session_id"] / "session.json").read_text())
    assert [s["model"]["variant"] for s in doc["stages"]] == ["tiny", "tiny-14b"]


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (["submit", "generate", "model=wan21", "num_frames=10"], "num_frames"),
        (["submit", "generate", "model=nope"], "model"),
        (["submit", "resume", "session=x", "colour=red"], "colour"),
        (["submit", "fork", "session=x", "step=two"], "step"),
        (["submit", "edit", "session=x", "step=1", "rect=0,0,a,8"], "mask.rect"),
        (["submit", "edit", "session=x", "strength=most"], "strength"),
        (["submit", "generate", "model=wan21", "schedule=hybrid_nope"], "schedule"),
        (["submit", "generate", "model=wan21", "schedule=hybrid_wan_sandwich", "boundary=0.5"], "schedule"),
        (["submit", "generate", "model=wan21", "boundary=0.5"], "boundary"),
        (["cancel", "7"], "job"),
    ],
)
def test_bad_input_is_one_line(tmp_path: Path, args: list[str], field: str) -> None:
    res = cli(*args, cwd=tmp_path)
    assert res.returncode == 2
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"error: {field}:"), res.stderr
