"""The README's "Write a plugin" example, pasted as is: built from the README's own text
into a temporary folder, installed (not editable), run from the command line with its
parameter, and its conformance test run with warnings as errors."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from arc_fabric_core.media.video import read_video

pytestmark = pytest.mark.slow

README = Path(__file__).resolve().parents[1] / "README.md"
# A file of the example: its path in bold code, then its fenced block.
FILE = re.compile(r"^\*\*`(arc-ripple/[^`]+)`\*\*[^\n]*\n\n```\w*\n(.*?)^```", re.M | re.S)


def example_files() -> dict[str, str]:
    text = README.read_text()
    section = text[text.index("## Write a plugin") :]
    section = section[: section.index("\n## ", 1)]
    return {path: body for path, body in FILE.findall(section)}


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("readme")
    files = example_files()
    assert set(files) == {
        "arc-ripple/pyproject.toml",
        "arc-ripple/arc_ripple/__init__.py",
        "arc-ripple/arc_ripple/plugin.py",
        "arc-ripple/tests/test_ripple.py",
    }, sorted(files)
    for path, body in files.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(body)
    site = root / "site"
    pip = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation"]
    subprocess.run(
        [*pip, "--target", str(site), str(root / "arc-ripple")],
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert not (site / "arc_ripple" / "conf").exists()  # no Hydra file needed
    environ = {k: v for k, v in os.environ.items() if k not in ("ARC_FABRIC_LOAD_PLUGINS", "ARC_FABRIC_STORE")}
    return {**environ, "PYTHONPATH": str(site), "HYDRA_FULL_ERROR": "0", "ARC_EXAMPLE_ROOT": str(root)}


def cli(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "arc_fabric_core", *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=300
    )


def session_of(stdout: str) -> str:
    match = re.search(r"^session:\s+(\S+)", stdout, re.M)
    assert match, stdout
    return match.group(1)


def latents(cwd: Path, session: str) -> torch.Tensor:
    return load_file(str(cwd / "outputs" / "sessions" / session / "latents.safetensors"))["latents"]


def test_its_parameter_is_set_as_the_readme_says(env: dict[str, str], tmp_path: Path) -> None:
    res = cli("+model=ripple", "rings=3", "output_dir=out/ripple", env=env, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    frames = read_video(tmp_path / "out" / "ripple" / "video.mp4")
    assert frames.shape == (12, 64, 64, 3) and frames.std() > 10  # rings, not noise
    # A model that needs no weights is not announced as noise.
    assert "RANDOM" not in res.stdout and "noise" not in res.stdout
    three = latents(tmp_path, session_of(res.stdout))
    res = cli("+model=ripple", "model.params.rings=3", env=env, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert torch.equal(latents(tmp_path, session_of(res.stdout)), three), "both spellings set the same field"
    res = cli("+model=ripple", env=env, cwd=tmp_path)
    assert not torch.equal(latents(tmp_path, session_of(res.stdout)), three), "rings must reach the model"


def test_bad_keys_and_values_are_one_line_each(env: dict[str, str], tmp_path: Path) -> None:
    cases = {
        ("rings=0",): "error: rings: Input should be greater than or equal to 1 (got 0)\n",
        ("ringz=3",): "error: ringz: unknown parameter; ripple takes: rings; and every run: ",
        ("model.params.ringz=3",): "error: model.params.ringz: unknown parameter of ripple; allowed: rings\n",
        ("model.weights=/nonexistent",): "error: model.weights: ripple needs no weights; drop model.weights",
        ("height=12",): "error: height: must be a multiple of 8 (got 12)\n",
    }
    for args, message in cases.items():
        res = cli("+model=ripple", *args, env=env, cwd=tmp_path)
        assert res.returncode == 2, (args, res.stderr)
        assert res.stderr.startswith(message), (args, res.stderr)
        assert res.stderr.count("error:") == 1 and res.stderr.count("(got") <= 1, res.stderr
    assert not (tmp_path / "outputs" / "sessions").exists() or not any((tmp_path / "outputs" / "sessions").iterdir())


def test_fork_and_jobs_take_the_same_spelling(env: dict[str, str], tmp_path: Path) -> None:
    res = cli("+model=ripple", env=env, cwd=tmp_path)
    parent = session_of(res.stdout)
    res = cli("sessions", "fork", parent, "--step", "3", "rings=6", env=env, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    res = cli("sessions", "fork", parent, "--step", "3", "model.params.rings=0", env=env, cwd=tmp_path)
    assert res.returncode == 2 and res.stderr == "error: rings: Input should be greater than or equal to 1 (got 0)\n"
    res = cli("sessions", "fork", parent, "--step", "3", "ringz=1", env=env, cwd=tmp_path)
    # The allowed list holds only what a fork may change.
    assert res.stderr.startswith("error: ringz: unknown parameter of ripple; a fork or edit may change: fps, guidance")
    assert "steps" not in res.stderr and "height" not in res.stderr, res.stderr
    res = cli("jobs", "submit", "generate", "model=ripple", "rings=0", env=env, cwd=tmp_path)
    assert res.returncode == 2 and res.stderr == "error: rings: Input should be greater than or equal to 1 (got 0)\n"
    res = cli("jobs", "submit", "generate", "model=ripple", "model.params.rings=2", "steps=3", env=env, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    res = cli("jobs", "list", "--json", env=env, cwd=tmp_path)
    (job,) = json.loads(res.stdout)
    assert job["payload"]["params"] == {"rings": 2, "steps": 3}


def test_it_is_listed_with_its_capabilities(env: dict[str, str], tmp_path: Path) -> None:
    res = cli("plugins", env=env, cwd=tmp_path)
    listing = {p["name"]: p for p in json.loads(res.stdout)}
    (model,) = listing["ripple"]["models"]
    assert listing["ripple"]["package"] == "arc-ripple"
    assert model["needs_weights"] is False and model["params_schema"]["properties"]["rings"]["default"] == 4
    assert model["capabilities"]["operations"] == ["generate", "resume", "fork", "decode", "edit"]


def test_its_conformance_test_passes_without_a_warning(env: dict[str, str], tmp_path: Path) -> None:
    tests = Path(env["ARC_EXAMPLE_ROOT"]) / "arc-ripple" / "tests"
    res = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-W", "error", str(tests)],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert res.returncode == 0, res.stdout[-3000:]
    assert re.search(r"^\d+ passed in ", res.stdout, re.M), res.stdout[-2000:]  # and nothing else: no skip, no error
    assert "warning" not in res.stdout.lower(), res.stdout[-2000:]
