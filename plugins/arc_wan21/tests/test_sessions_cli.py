"""`python -m arc_fabric_core sessions ...` end to end: every operation, files checked on disk."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from arc_fabric_core.media.video import read_video
from arc_fabric_core.testing.cli import run_cli

pytestmark = pytest.mark.slow

SMALL = ["num_frames=9", "height=32", "width=32", "steps=4"]


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return run_cli(*args, cwd=cwd, env={"ARC_FABRIC_STORE": str(cwd / "store")})


def ok(*args: str, cwd: Path) -> str:
    res = cli(*args, cwd=cwd)
    assert res.returncode == 0, res.stderr
    return res.stdout


def new_id(before: set[str], cwd: Path) -> str:
    (created,) = {p.name for p in (cwd / "store").iterdir()} - before
    return created


def ids(cwd: Path) -> set[str]:
    return {p.name for p in (cwd / "store").iterdir()}


def latents(cwd: Path, session: str) -> torch.Tensor:
    return load_file(cwd / "store" / session / "latents.safetensors")["latents"]


def test_every_session_operation_from_the_command_line(tmp_path: Path) -> None:
    ok("+model=wan21", *SMALL, f"output_dir={tmp_path / 'run'}", cwd=tmp_path)
    (parent,) = ids(tmp_path)

    # fork with an override, by an abbreviated id; the video lands in the fork's folder
    before = ids(tmp_path)
    out = ok("sessions", "fork", parent[-8:], "--step", "2", "prompt=a grey wolf", "guidance=4", cwd=tmp_path)
    fork = new_id(before, tmp_path)
    assert f"fork: {fork} from {parent}@2, runs 2 steps" in out
    assert read_video(tmp_path / "store" / fork / "video.mp4").shape == (9, 32, 32, 3)

    # a masked edit: outside the rectangle and frames, the parent's latents stay
    before = ids(tmp_path)
    out = ok(
        "sessions", "edit", parent, "--strength", "0.5", "--rect", "0,0,16,16", "--frames", "5:9",
        "prompt=a lantern", "--out", str(tmp_path / "edit.mp4"), cwd=tmp_path,
    )  # fmt: skip
    edit = new_id(before, tmp_path)
    assert "re-denoising steps 2..4" in out
    assert read_video(tmp_path / "edit.mp4").shape == (9, 32, 32, 3)
    inside = torch.zeros(1, 16, 3, 4, 4, dtype=torch.bool)
    inside[:, :, 2, :2, :2] = True
    a, b = latents(tmp_path, parent), latents(tmp_path, edit)
    assert torch.equal(a[~inside], b[~inside]) and not torch.equal(a[inside], b[inside])

    # list draws the tree; show gives lineage, params and progress
    tree = ok("sessions", "list", cwd=tmp_path).splitlines()
    assert tree[0].startswith(parent) and any(fork in line and "fork@2" in line for line in tree[1:])
    shown = json.loads(ok("sessions", "show", edit, "--json", cwd=tmp_path))
    assert shown["lineage"] == {"ancestors": [parent], "children": []}
    assert shown["operation"] == "edit" and shown["edit"]["rect"] == [0, 0, 16, 16]
    text = ok("sessions", "show", parent, cwd=tmp_path)
    assert "status    completed, step 4/4" in text and fork in text and edit in text

    # a fork created now, run part-way, then resumed to the end
    before = ids(tmp_path)
    ok("sessions", "fork", fork, "--step", "2", "--no-run", cwd=tmp_path)
    paused = new_id(before, tmp_path)
    assert "paused at step 3/4" in ok("sessions", "resume", paused, "--until", "3", "--no-video", cwd=tmp_path)
    # A damaged newest checkpoint is named, and the resume falls back to the one before it.
    newest = tmp_path / "store" / paused / "checkpoints" / "step_00003.safetensors"
    newest.write_bytes(newest.read_bytes()[:-5])
    res = cli("sessions", "resume", paused, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert f"session {paused}: checkpoints/step_00003.safetensors is corrupt" in res.stderr
    assert "completed at step 4/4" in res.stdout
    assert torch.equal(latents(tmp_path, paused), latents(tmp_path, fork)), "a fork without overrides equals its source"

    # decode a frame range; an unfinished session decodes as a preview
    ok("sessions", "decode", parent, "--frames", "2:6", "--out", str(tmp_path / "part.mp4"), cwd=tmp_path)
    assert read_video(tmp_path / "part.mp4").shape == (4, 32, 32, 3)

    # delete the parent: its fork still decodes from the checkpoints it shares
    assert f"deleted {parent}" in ok("sessions", "delete", parent, cwd=tmp_path)
    ok("sessions", "decode", fork, "--out", str(tmp_path / "fork.mp4"), cwd=tmp_path)
    (tmp_path / "store" / fork / "checkpoints" / "step_00042.safetensors").write_bytes(b"stray")
    assert "removed 1 files" in ok("sessions", "gc", cwd=tmp_path)


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One finished session, shared: every bad-input test checks it is left untouched."""
    cwd = tmp_path_factory.mktemp("generated")
    ok("+model=wan21", *SMALL, f"output_dir={cwd / 'run'}", cwd=cwd)
    return cwd


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (["fork", "{id}", "--step", "4"], "step"),
        (["fork", "{id}", "--step", "1", "height=64"], "height"),
        (["fork", "{id}", "--step", "1", "shift=3"], "shift"),
        (["edit", "{id}", "--step", "1", "--rect", "0,0,40,8"], "mask.rect"),
        (["edit", "{id}", "--step", "1", "--rect", "0,0,8"], "mask.rect"),
        (["edit", "{id}", "--step", "1", "--frames", "3:20"], "mask.frames"),
        (["edit", "{id}", "--strength", "1.5"], "strength"),
        (["decode", "{id}", "--frames", "5:2"], "frames"),
        (["show", "nope"], "id"),
    ],
)
def test_bad_input_is_one_clear_line_and_changes_nothing(generated: Path, args: list[str], field: str) -> None:
    tmp_path = generated
    (parent,) = ids(tmp_path)
    doc = (tmp_path / "store" / parent / "session.json").read_bytes()
    res = cli("sessions", *[a.replace("{id}", parent) for a in args], cwd=tmp_path)
    assert res.returncode == 2
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"error: {field}:"), res.stderr
    assert ids(tmp_path) == {parent} and (tmp_path / "store" / parent / "session.json").read_bytes() == doc
