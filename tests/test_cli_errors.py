"""A bad value on the generate command line is one line naming the field and what is
allowed (exit 2), never a traceback, and nothing runs."""

from __future__ import annotations

from pathlib import Path

import pytest

import arc_fabric_core.dispatch.plugins as plugins_module
from arc_fabric_core.cli.main import main
from arc_fabric_core.dispatch.plugins import Plugins
from arc_toy import plugin as toy  # on the path: conftest puts it there

SMALL = ["+model=toy", "num_frames=2", "height=8", "width=8", "steps=2"]


@pytest.mark.parametrize(
    ("override", "field", "allowed"),
    [
        ("store_dir=FILE", "store_dir", "not a folder"),
        ("store_dir=FILE/sessions", "store_dir", "not a folder"),
        ("output_dir=FILE", "output_dir", "not a folder"),
        ("checkpoint_keep_steps=abc", "checkpoint_keep_steps", "list of steps"),
        ("checkpoint_every=abc", "checkpoint_every", "integer"),
        ("dtype=int8", "dtype", "auto, float32, bfloat16, float16"),
        # 64 bits, or the upper bound of steps' own where it has one.
        ("steps=99999999999999999999", "steps", "at most|less than or equal to"),
        ("seed=18446744073709551616", "seed", "18446744073709551615"),
        ("guidance=inf", "guidance", "finite"),
        ("speed=nan", "speed", "finite"),
    ],
)
def test_a_bad_value_is_one_line_naming_it(
    override: str,
    field: str,
    allowed: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    plugins = Plugins(load_entrypoints=False)
    plugins.register(toy, name="toy")
    monkeypatch.setattr(plugins_module, "_plugins", plugins)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ARC_FABRIC_STORE", str(tmp_path / "store"))
    (tmp_path / "FILE").write_text("not a folder")
    argv = [*SMALL, override.replace("FILE", str(tmp_path / "FILE"))]
    if not override.startswith("output_dir="):
        argv.append(f"output_dir={tmp_path / 'out'}")
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    _, err = capfd.readouterr()
    assert exit_info.value.code == 2, err
    assert "Traceback" not in err and err.count("\n") == 1, err
    assert err.startswith(f"error: {field}: ") and any(a in err for a in allowed.split("|")), err
    assert not (tmp_path / "out" / "video.mp4").exists()
    assert not any((tmp_path / "store").glob("*/session.json"))  # nothing was created
