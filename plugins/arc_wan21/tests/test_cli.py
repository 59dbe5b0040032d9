"""The CLI end to end: command line in, mp4 and session files out."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from safetensors.torch import load_file

from arc_fabric_core.media.video import read_video
from arc_fabric_core.testing.cli import run_cli

pytestmark = pytest.mark.slow


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return run_cli(*args, cwd=cwd)


def only_session(cwd: Path) -> Path:
    sessions = list((cwd / "outputs" / "sessions").iterdir())
    assert len(sessions) == 1
    return sessions[0]


def test_generates_mp4_and_session(tmp_path: Path) -> None:
    out = tmp_path / "run"
    res = cli("+model=wan21", "num_frames=17", "height=64", "width=64", "steps=3", f"output_dir={out}", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "RANDOM weights" in res.stdout and "noise" in res.stdout
    # No terminal here, so progress comes as lines rather than a bar.
    assert [line.split(" (")[0] for line in res.stderr.splitlines() if line.startswith("step ")] == [
        "step 1/3",
        "step 2/3",
        "step 3/3",
    ]
    frames = read_video(out / "video.mp4")
    assert frames.shape == (17, 64, 64, 3)
    session = only_session(tmp_path)
    latents = load_file(session / "latents.safetensors")["latents"]
    assert tuple(latents.shape) == (1, 16, 5, 8, 8)
    doc = json.loads((session / "session.json").read_text())
    assert doc["status"] == "completed" and doc["step_index"] == 3 and doc["model"]["variant"] == "tiny"
    assert (out / ".hydra" / "config.yaml").is_file()


def test_overrides_reach_the_session(tmp_path: Path) -> None:
    out = tmp_path / "run"
    res = cli(
        "+model=wan21",
        "prompt=a paper boat",
        "negative_prompt=rain",
        "seed=5",
        "steps=2",
        "num_frames=5",
        "height=32",
        "width=48",
        "guidance=3.5",
        "fps=8",
        "model.variant=tiny",
        "model.params.shift=3",
        f"output_dir={out}",
        cwd=tmp_path,
    )
    assert res.returncode == 0, res.stderr
    params = json.loads((only_session(tmp_path) / "session.json").read_text())["params"]
    assert params == {
        "prompt": "a paper boat",
        "negative_prompt": "rain",
        "seed": 5,
        "steps": 2,
        "num_frames": 5,
        "height": 32,
        "width": 48,
        "guidance": 3.5,
        "fps": 8,
        "shift": 3.0,
        "max_sequence_length": 512,
    }
    import imageio.v2 as imageio

    reader = imageio.get_reader(str(out / "video.mp4"))
    assert reader.get_meta_data()["fps"] == 8
    assert reader.get_meta_data()["size"] == (48, 32)
    reader.close()


def test_real_variant_from_a_local_folder(tmp_path: Path, tiny_folder: Path) -> None:
    out = tmp_path / "run"
    res = cli(
        "+model=wan21",
        "model.variant=1.3b",
        f"model.weights={tiny_folder}",
        "steps=2",
        "num_frames=5",
        "height=32",
        "width=32",
        f"output_dir={out}",
        cwd=tmp_path,
    )
    assert res.returncode == 0, res.stderr
    assert "RANDOM" not in res.stdout
    assert json.loads((only_session(tmp_path) / "session.json").read_text())["model"]["weights"] == str(tiny_folder)


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (["+model=nope"], "model"),
        ([], "model"),
        (["+model=wan21", "num_frames=18"], "num_frames"),
        (["+model=wan21", "height=70"], "height"),
        (["+model=wan21", "width=100"], "width"),
        (["+model=wan21", "steps=0"], "steps"),
        (["+model=wan21", "guidance=-1"], "guidance"),
        (["+model=wan21", "model.weights=/does/not/exist"], "model.weights"),
        (["+model=wan21", "model.variant=14b"], "model.weights"),
    ],
)
def test_bad_input_is_one_clear_line(tmp_path: Path, args: list[str], field: str) -> None:
    res = cli(*args, f"output_dir={tmp_path / 'run'}", cwd=tmp_path)
    assert res.returncode == 2
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith(f"error: {field}:"), lines[0]
    assert "Traceback" not in res.stderr + res.stdout
    if args and args[0] == "+model=nope":
        assert "wan21" in lines[0]
    if field == "model.weights":
        assert "model.variant=tiny" in lines[0]
    assert not list(tmp_path.rglob("*.safetensors")), "nothing may be computed or written"


def test_multirun_reuses_the_loaded_model(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    res = cli(
        "-m",
        "model=wan21",  # the plain form works too
        "seed=0,1,2",
        "steps=2",
        "num_frames=5",
        "height=32",
        "width=32",
        f"hydra.sweep.dir={sweep}",
        cwd=tmp_path,
    )
    assert res.returncode == 0, res.stderr
    assert res.stdout.count("loaded wan21/tiny") == 1
    assert res.stdout.count("already warm") == 2
    videos = sorted(sweep.glob("*/video.mp4"))
    assert len(videos) == 3
    latents = [
        load_file(f)["latents"] for f in sorted((tmp_path / "outputs" / "sessions").glob("*/latents.safetensors"))
    ]
    assert len(latents) == 3
    assert not (latents[0] == latents[1]).all()
