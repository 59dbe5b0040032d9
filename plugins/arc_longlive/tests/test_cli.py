"""LongLive from the command line: `+model=longlive` with a prompt schedule writes the
video; sessions extend and rewind from the CLI, files checked on disk."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from arc_fabric_core.media.video import read_video
from arc_fabric_core.testing.cli import run_cli

pytestmark = pytest.mark.slow

SMALL = ["num_frames=21", "height=32", "width=32", "prompt=a fox in snow"]  # 2 blocks


def ok(*args: str, cwd: Path) -> str:
    res: subprocess.CompletedProcess = run_cli(*args, cwd=cwd, env={"ARC_FABRIC_STORE": str(cwd / "store")})
    assert res.returncode == 0, res.stderr
    return res.stdout


def ids(cwd: Path) -> set[str]:
    return {p.name for p in (cwd / "store").iterdir()}


def latents(cwd: Path, session: str) -> torch.Tensor:
    return load_file(cwd / "store" / session / "latents.safetensors")["latents"]


def test_generate_extend_and_rewind_from_the_command_line(tmp_path: Path) -> None:
    schedule = ['prompts=["a cat on a roof"]', "switch_frames=[3]"]
    ok("+model=longlive", *SMALL, *schedule, f"output_dir={tmp_path / 'run'}", cwd=tmp_path)
    (parent,) = ids(tmp_path)
    assert read_video(tmp_path / "run" / "video.mp4").shape == (21, 32, 32, 3)

    before = ids(tmp_path)
    out = ok("sessions", "extend", parent, "--blocks", "2", "--prompt", "a bird in the sky", cwd=tmp_path)
    (extended,) = ids(tmp_path) - before
    assert f"extend: {extended} from {parent}, 2 more blocks (8 steps)" in out
    assert read_video(tmp_path / "store" / extended / "video.mp4").shape == (45, 32, 32, 3)
    # The parent's frames are the first frames of the extension, untouched.
    assert torch.equal(latents(tmp_path, extended)[:, :, :6], latents(tmp_path, parent))

    before = ids(tmp_path)
    out = ok("sessions", "rewind", extended, "--block", "3", "--prompt", "a boat", cwd=tmp_path)
    (rewound,) = ids(tmp_path) - before
    assert f"rewind: {rewound} from {extended} at block 3 (step 12)" in out
    mine, theirs = latents(tmp_path, rewound), latents(tmp_path, extended)
    assert torch.equal(mine[:, :, :9], theirs[:, :, :9]) and not torch.equal(mine[:, :, 9:], theirs[:, :, 9:])


def test_a_bad_switch_schedule_is_one_clear_line(tmp_path: Path) -> None:
    res = run_cli("+model=longlive", *SMALL, 'prompts=["a cat"]', cwd=tmp_path, env={})
    assert res.returncode == 2
    assert "error: switch_frames: one per entry of prompts (1), got 0" in res.stderr
