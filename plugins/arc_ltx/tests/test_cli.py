"""The CLI end to end with LTX: command line in, mp4 and session files out."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from safetensors.torch import load_file

from arc_fabric_core.media.video import read_video
from arc_fabric_core.testing.cli import run_cli

pytestmark = pytest.mark.slow


def only_session(cwd: Path) -> Path:
    sessions = list((cwd / "outputs" / "sessions").iterdir())
    assert len(sessions) == 1
    return sessions[0]


def step_lines(stderr: str) -> list[str]:
    return [line.split(" (")[0] for line in stderr.splitlines() if line.startswith("step ")]


def test_generates_mp4_and_session(tmp_path: Path) -> None:
    out = tmp_path / "run"
    res = run_cli("+model=ltx", "model.variant=tiny", f"output_dir={out}", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "RANDOM weights" in res.stdout and "noise" in res.stdout
    # The tiny variant's defaults: the distilled 8 steps, 9 frames at 96x64.
    assert step_lines(res.stderr) == [f"step {i}/8" for i in range(1, 9)]
    assert "timesteps" not in res.stderr  # diffusers' custom-timestep warning is not for us
    assert read_video(out / "video.mp4").shape == (9, 64, 96, 3)
    session = only_session(tmp_path)
    assert tuple(load_file(session / "latents.safetensors")["latents"].shape) == (1, 8, 3, 16, 24)
    doc = json.loads((session / "session.json").read_text())
    assert doc["status"] == "completed" and doc["model"] == {"name": "ltx", "variant": "tiny", "weights": None}
    assert doc["params"]["timesteps"] == [1000, 993, 987, 981, 975, 909, 725, 421]
    assert doc["timesteps"] == doc["params"]["timesteps"]


def test_multiscale_from_the_command_line(tmp_path: Path) -> None:
    out = tmp_path / "run"
    res = run_cli(
        "+model=ltx",
        "model.params.multiscale=true",
        "model.params.pass2_timesteps=[909,600]",
        "fps=24",
        f"output_dir={out}",
        cwd=tmp_path,
    )
    assert res.returncode == 0, res.stderr
    assert step_lines(res.stderr) == [f"step {i}/9" for i in range(1, 10)]  # 7 + 2
    assert read_video(out / "video.mp4").shape == (9, 64, 96, 3)  # refined at 64x128, resized back
    doc = json.loads((only_session(tmp_path) / "session.json").read_text())
    assert doc["passes"] == [7, 2] and doc["params"]["pass2_timesteps"] == [909, 600]
    assert any(c["step"] == 7 for c in doc["checkpoints"])


def test_hybrid_2b_13b_runs_on_the_stand_ins(tmp_path: Path) -> None:
    res = run_cli("+model=ltx", "+schedule=hybrid_ltx_2b_13b", f"output_dir={tmp_path / 'run'}", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "stand-in 'tiny'" in res.stdout and "stand-in 'tiny-13b'" in res.stdout
    assert "stage 0: ltx/tiny steps 0..4" in res.stdout and "stage 1: ltx/tiny-13b steps 4..8" in res.stdout


@pytest.mark.parametrize(
    ("args", "field", "says"),
    [
        (["num_frames=10"], "num_frames", "nearest: 9 or 17"),
        (["height=70"], "height", "nearest: 64 or 96"),
        (["steps=3"], "steps", "distilled schedule has 8 steps"),
        (["model.params.timesteps=[500,900]"], "timesteps", "fall"),
        (["model.variant=13b-distilled"], "model.weights", "ARC_LTX_13B_DISTILLED_WEIGHTS"),
    ],
)
def test_bad_input_is_one_clear_line(tmp_path: Path, args: list[str], field: str, says: str) -> None:
    res = run_cli("+model=ltx", *args, f"output_dir={tmp_path / 'run'}", cwd=tmp_path)
    assert res.returncode == 2
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith(f"error: {field}:") and says in lines[0], lines[0]
    assert "Traceback" not in res.stderr + res.stdout
    assert not list(tmp_path.rglob("*.safetensors")), "nothing may be computed or written"


def test_multiscale_real_variant_without_upsampler_is_one_clear_line(tmp_path: Path, tiny_folder: Path) -> None:
    res = run_cli(
        "+model=ltx",
        "model.variant=2b-distilled",
        f"model.weights={tiny_folder}",
        "model.params.multiscale=true",
        f"output_dir={tmp_path / 'run'}",
        cwd=tmp_path,
    )
    assert res.returncode == 2
    assert res.stderr.startswith("error: model.weights: multiscale=true needs the latent upsampler"), res.stderr
    assert "ARC_LTX_UPSAMPLER_WEIGHTS" in res.stderr
    assert not list(tmp_path.rglob("*.safetensors"))
