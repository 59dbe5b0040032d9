"""Bad input to a DreamDojo rollout is one line naming the field and what is allowed,
before any model loads: actions of the wrong shape or for another embodiment's dims, an
image of another size (with the resize policy), a weights folder without its embedding,
a missing inputs file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from arc_fabric_core.testing.cli import run_cli

pytestmark = pytest.mark.slow

TINY = ["num_frames=25", "height=32", "width=48", "steps=1"]


def fail(tmp_path: Path, *args: str) -> str:
    res = run_cli("+model=dreamdojo", *TINY, *args, cwd=tmp_path, env={"ARC_FABRIC_STORE": str(tmp_path / "store")})
    assert res.returncode == 2, (res.stdout, res.stderr)
    lines = [line for line in res.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, res.stderr
    assert not (tmp_path / "store").exists() or not any((tmp_path / "store").iterdir()), "a session was written"
    assert "loaded dreamdojo" not in res.stdout
    return lines[0]


def image(tmp_path: Path, height: int = 32, width: int = 48) -> Path:
    path = tmp_path / f"first-{width}x{height}.png"
    Image.fromarray((np.random.RandomState(0).rand(height, width, 3) * 255).astype("uint8")).save(path)
    return path


def actions(tmp_path: Path, rows: int = 24, dims: slice = slice(0, 29), width: int = 384) -> Path:
    a = np.zeros((rows, width), dtype=np.float32)
    a[:, dims] = 0.5
    path = tmp_path / f"act-{rows}-{dims.start}-{width}.npy"
    np.save(path, a)
    return path


@pytest.mark.parametrize(
    ("make", "says"),
    [
        (
            lambda t: ["image=" + str(image(t)), "actions=" + str(actions(t, rows=20))],
            "inputs.actions: must have shape (24, 384)",
        ),
        (
            lambda t: ["image=" + str(image(t)), "actions=" + str(actions(t, width=29))],
            "inputs.actions: must have shape (24, 384)",
        ),
        (
            lambda t: ["image=" + str(image(t)), "actions=" + str(actions(t, dims=slice(58, 101)))],
            "inputs.actions: has values in dim 58 (g1's dims); gr1 actions lie in dims [0, 29)",
        ),
        (lambda t: ["image=" + str(image(t, 480, 640)), "actions=" + str(actions(t))], "centre-crops to 4:3"),
        (lambda t: ["image=" + str(t / "missing.png"), "actions=" + str(actions(t))], "inputs.image"),
    ],
    ids=["rows", "compact-dims", "other-embodiment", "image-size", "missing-image"],
)
def test_a_bad_input_is_one_line_before_any_model_loads(tmp_path: Path, make, says: str) -> None:
    assert says in fail(tmp_path, *make(tmp_path))


def test_a_weights_folder_without_its_embedding_is_named(tmp_path: Path) -> None:
    folder = tmp_path / "weights"
    folder.mkdir()
    (folder / "model_ema_bf16.pt").write_bytes(b"")
    line = fail(tmp_path, "model.variant=2b-gr1", f"model.weights={folder}", f"image={image(tmp_path)}")
    assert "cr1_empty_string_text_embeddings.pt" in line and "model.weights" in line
