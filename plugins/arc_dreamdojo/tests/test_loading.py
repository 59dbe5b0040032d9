"""A real variant loads its folder in the published layout: here a tiny checkpoint
saved in the authors' key names (``model_ema_bf16.pt`` or a DCP ``model/`` folder), a
diffusers ``vae/``, the empty-prompt embedding and the statistics — and rolls out what
the same weights give as the tiny variant. A folder missing a piece is refused when the
model is resolved, naming the file, before anything loads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from arc_dreamdojo import plugin
from arc_dreamdojo.author_layout import save_author_checkpoint
from arc_dreamdojo.tiny import tiny_parts
from arc_dreamdojo.weights import STATS_FILE, TEXT_FILE

from arc_fabric_core.contract.errors import WeightsError
from arc_fabric_core.engine.facade import Engine
from arc_fabric_core.store.files import SessionStore

H, W = 32, 48
PARAMS = {"num_frames": 25, "height": H, "width": W, "steps": 2}


def tiny_folder(root: Path, dcp: bool = False) -> Path:
    net, vae, text = tiny_parts()
    if dcp:
        save_author_checkpoint(net, root / "model", dcp=True)
    else:
        save_author_checkpoint(net, root / "model_ema_bf16.pt")
    vae.save_pretrained(root / "vae")
    torch.save(text, root / TEXT_FILE)
    (root / STATS_FILE).write_text(json.dumps({"action": {"min": [0.0] * 44, "max": [1.0] * 44}}))
    return root


def inputs() -> dict[str, torch.Tensor]:
    image = plugin.quantize(torch.rand(3, H, W, generator=torch.Generator().manual_seed(0)))
    actions = torch.zeros(24, 384)
    actions[:, :29] = torch.rand(24, 29, generator=torch.Generator().manual_seed(1))
    return {"image": image, "actions": actions}


@pytest.mark.parametrize("dcp", [False, True])
def test_a_folder_in_the_published_layout_rolls_out_as_its_weights_do(tmp_path: Path, dcp: bool) -> None:
    folder = tiny_folder(tmp_path / "weights", dcp=dcp)
    engine = Engine(SessionStore(tmp_path / "sessions"), device="cpu")
    real = engine.create("dreamdojo", PARAMS, variant="2b-gr1", weights=str(folder), inputs=inputs())
    assert real.ref.weights == folder.resolve()
    engine.run(real)
    tiny = engine.create("dreamdojo", PARAMS, variant="tiny", inputs=inputs())
    engine.run(tiny)
    assert torch.equal(engine.final_latents(real), engine.final_latents(tiny))


@pytest.mark.parametrize(
    ("missing", "says"),
    [
        ("model_ema_bf16.pt", "model_ema_bf16.pt"),
        (TEXT_FILE, TEXT_FILE),
        (STATS_FILE, STATS_FILE),
        ("vae", "tokenizer.pth"),
    ],
)
def test_a_folder_missing_a_piece_is_refused_before_anything_loads(tmp_path: Path, missing: str, says: str) -> None:
    folder = tiny_folder(tmp_path / "weights")
    target = folder / missing
    if target.is_dir():
        for f in sorted(target.rglob("*"), reverse=True):
            f.unlink() if f.is_file() else f.rmdir()
        target.rmdir()
    else:
        target.unlink()
    engine = Engine(SessionStore(tmp_path / "sessions"), device="cpu")
    with pytest.raises(WeightsError) as caught:
        engine.plan("dreamdojo", PARAMS, variant="2b-gr1", weights=str(folder), inputs=inputs())
    assert caught.value.field == "model.weights" and says in str(caught.value)
