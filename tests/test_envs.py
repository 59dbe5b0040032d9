"""Per-plugin venvs on a shared base holding torch (arc_fabric_core/runtime/envs.py)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from arc_fabric_core.cli.main import main
from arc_fabric_core.runtime.envs import BASE_NAME, LAYER_PTH, PluginEnv, create_env, envs_root, find_env, list_envs


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Run ``python -m arc_fabric_core env ...`` in-process: (exit code, stdout, stderr)."""
    try:
        main(["env", *argv])
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def run_in(env: PluginEnv, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """The env's python, as a worker would start it: no PYTHONPATH from this process."""
    environ = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    return subprocess.run(
        [str(env.python), *args], cwd=cwd, env=environ, capture_output=True, text=True, check=False, timeout=300
    )


def test_envs_root_from_environment(tmp_path: Path) -> None:
    assert envs_root({"ARC_FABRIC_ENVS": str(tmp_path / "e")}) == tmp_path / "e"
    assert envs_root({"ARC_FABRIC_CACHE": str(tmp_path)}) == tmp_path / "envs"
    assert envs_root({}) == Path.home() / ".cache" / "arc_fabric" / "envs"


def test_unknown_name_is_refused_before_anything_is_made(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "envs"
    code, _, err = cli(capsys, "create", "sdxl", "--root", str(root))
    assert code == 2
    assert err.startswith("error: name: unknown plugin 'sdxl'; allowed: wan21, ltx, longlive, toy")
    assert "--from" in err
    assert len(err.strip().splitlines()) == 1
    assert not root.exists()


@pytest.mark.parametrize("name", ["../escape", "a/b", "_base", "-x", "", "toy env"])
def test_bad_name_is_refused_before_anything_is_made(tmp_path: Path, name: str) -> None:
    root = tmp_path / "envs"
    with pytest.raises(ValueError, match=r"name: .*letters, digits"):
        create_env(name, source=str(tmp_path), root=root)
    assert not root.exists()
    assert not (tmp_path / "escape").exists()


def test_path_of_a_missing_env_names_the_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = cli(capsys, "path", "toy", "--root", str(tmp_path))
    assert code == 2
    assert out == ""
    assert err.startswith("error: name: no env 'toy'")
    assert f"python -m arc_fabric_core env create toy --root {tmp_path}" in err
    assert find_env("toy", tmp_path) is None


def test_list_of_an_empty_root(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(capsys, "list", "--root", str(tmp_path / "none")) == (0, "[]\n", "")
    assert list_envs(tmp_path) == []


def test_remove_of_a_missing_env(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = cli(capsys, "remove", "toy", "--root", str(tmp_path))
    assert code == 2
    assert err.startswith("error: name: no env 'toy'")


@pytest.mark.slow
def test_toy_env_holds_the_toy_plugin_only(toy_env: PluginEnv, tmp_path: Path) -> None:
    code = (
        "import importlib.util as u, arc_fabric_core, arc_toy; "
        "print([m for m in ('arc_wan21', 'arc_ltx') if u.find_spec(m) is not None])"
    )
    proc = run_in(toy_env, "-c", code, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"

    proc = run_in(toy_env, "-m", "arc_fabric_core", "plugins", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    models = [m["name"] for p in json.loads(proc.stdout) for m in p["models"]]
    assert models == ["toy"]


@pytest.mark.slow
def test_torch_comes_from_the_base(toy_env: PluginEnv, tmp_path: Path) -> None:
    assert toy_env.base == toy_env.path.parent / BASE_NAME
    proc = run_in(
        toy_env,
        "-c",
        "import sysconfig, torch; print(torch.__file__); print(sysconfig.get_path('purelib'))",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    torch_file, own_site = (Path(line) for line in proc.stdout.strip().splitlines())
    assert torch_file.is_relative_to(toy_env.base)
    assert own_site.is_relative_to(toy_env.path)
    assert (own_site / LAYER_PTH).is_file()
    assert not (own_site / "torch").exists()  # the copy layering saves
    assert not list(own_site.glob("torch-*.dist-info"))
    assert not (own_site / "nvidia").exists()  # torch's CUDA libraries, gigabytes

    # pip sees the base's torch as installed: asking for it installs nothing.
    proc = run_in(toy_env, "-m", "pip", "install", "--dry-run", "--no-index", "torch==2.14.1", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Would install" not in proc.stdout


@pytest.mark.slow
def test_env_list_shows_it(toy_env: PluginEnv, capsys: pytest.CaptureFixture[str]) -> None:
    root = toy_env.path.parent
    code, out, _ = cli(capsys, "list", "--root", str(root))
    assert code == 0
    (row,) = json.loads(out)
    assert row == {
        "name": "toy",
        "path": str(toy_env.path),
        "python": str(toy_env.python),
        "base": str(toy_env.base),
        "source": str(Path(__file__).resolve().parents[1] / "examples" / "arc_toy"),
    }
    assert cli(capsys, "path", "toy", "--root", str(root)) == (0, f"{toy_env.python}\n", "")
    assert find_env(BASE_NAME, root) is not None
    code, _, err = cli(capsys, "remove", BASE_NAME, "--root", str(root))
    assert code == 2
    assert "used by toy" in err


@pytest.mark.slow
def test_create_again_updates_and_keeps_it_working(toy_env: PluginEnv, tmp_path: Path) -> None:
    before = toy_env.record()
    lines: list[str] = []
    again = create_env("toy", root=toy_env.path.parent, progress=lines.append)
    assert again == toy_env
    assert any(line.startswith("updating toy env") for line in lines), lines
    after = again.record()
    assert after["created"] == before["created"]
    proc = run_in(again, "-m", "arc_fabric_core", "plugins", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert [p["name"] for p in json.loads(proc.stdout)] == ["toy"]
