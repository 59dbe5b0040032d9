"""The session store: atomic, checksummed, versioned; a corrupt checkpoint never loads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from arc_fabric_core.contract.errors import SessionError
from arc_fabric_core.engine.facade import Engine
from arc_fabric_core.store.files import SessionStore, atomic_write
from arc_fabric_core.store.session import FORMAT_VERSION, LATENTS_KEY

PARAMS = {"num_frames": 3, "height": 8, "width": 8, "steps": 6, "prompt": "store"}


def test_atomic_write_leaves_no_temporary_files(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b.bin"
    atomic_write(target, b"x" * 10)
    atomic_write(target, b"y" * 3)
    assert target.read_bytes() == b"yyy"
    assert [p.name for p in target.parent.iterdir()] == ["b.bin"]


def test_session_files_and_final_latents(toy_engine: Engine) -> None:
    session = toy_engine.create("toy", PARAMS)
    toy_engine.run(session)
    folder = toy_engine.store.session_dir(session.id)
    doc = json.loads((folder / "session.json").read_text())
    assert doc["format_version"] == FORMAT_VERSION == "1.2" and doc["status"] == "completed"
    assert [c["step"] for c in doc["checkpoints"]] == list(range(7))  # by default every step, all kept
    assert sorted(p.name for p in (folder / "checkpoints").iterdir()) == [f"step_{i:05d}.safetensors" for i in range(7)]
    from safetensors.torch import load_file

    latents = load_file(folder / "latents.safetensors")[LATENTS_KEY]
    assert latents.shape == (1, 3, 3, 8, 8) and latents.dtype == torch.float32
    assert torch.equal(latents, session.latents)


def test_checkpoint_policy_every_k_keep_all(tmp_path: Path, toy_plugins) -> None:
    engine = Engine(SessionStore(tmp_path), plugins=toy_plugins, device="cpu", checkpoint_every=4, checkpoint_keep=0)
    session = engine.create("toy", {**PARAMS, "steps": 10})
    engine.run(session)
    assert [c.step for c in engine.store.load_doc(session.id).checkpoints] == [0, 4, 8, 10]


def test_checkpoint_policy_keep_newest_n_and_named_steps(tmp_path: Path, toy_plugins) -> None:
    engine = Engine(
        SessionStore(tmp_path), plugins=toy_plugins, device="cpu", checkpoint_keep=2, checkpoint_keep_steps=[3]
    )
    session = engine.create("toy", {**PARAMS, "steps": 8})
    engine.run(session)
    # Step 0 (where the session starts) and the named step survive the keep window.
    assert [c.step for c in engine.store.load_doc(session.id).checkpoints] == [0, 3, 7, 8]
    files = sorted(p.name for p in (engine.store.session_dir(session.id) / "checkpoints").iterdir())
    assert files == [f"step_{i:05d}.safetensors" for i in (0, 3, 7, 8)]


def test_corrupt_checkpoint_is_detected_and_resume_falls_back(toy_engine: Engine, toy_plugins) -> None:
    full = toy_engine.create("toy", PARAMS)
    toy_engine.run(full)

    partial = toy_engine.create("toy", PARAMS)
    toy_engine.run(partial, until=4)
    newest = toy_engine.store.load_doc(partial.id).checkpoints[-1]
    path = toy_engine.store.session_dir(partial.id) / newest.file
    data = bytearray(path.read_bytes())
    data[-5] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(SessionError, match=rf"{partial.id}: checkpoints/step_00004.safetensors is corrupt"):
        toy_engine.store.read_tensors(partial.id, newest)

    # Resume falls back to step 3 (the previous checkpoint) and still finishes exactly.
    fresh = Engine(toy_engine.store, plugins=toy_plugins, device="cpu")
    resumed = fresh.open(partial.id)
    fresh.run(resumed)
    assert torch.equal(fresh.final_latents(resumed), toy_engine.final_latents(full))


def test_newer_major_format_is_refused(toy_engine: Engine) -> None:
    session = toy_engine.create("toy", PARAMS)
    path = toy_engine.store.session_dir(session.id) / "session.json"
    doc = json.loads(path.read_text())
    doc["format_version"] = "2.0"
    path.write_text(json.dumps(doc))
    with pytest.raises(SessionError, match=r"format 2\.0.*upgrade"):
        toy_engine.store.load_doc(session.id)


def test_unknown_session_is_a_clear_error(toy_engine: Engine) -> None:
    with pytest.raises(SessionError, match="session 'nope' not found"):
        toy_engine.open("nope")


def test_failure_keeps_the_last_checkpoint(tmp_path: Path, toy_plugins) -> None:
    from arc_fabric_core.contract.hookspecs import hookimpl

    class Boom:
        calls = 0

        @hookimpl(wrapper=True)
        def arc_denoise_step(self, step):
            if step.index == 3:
                raise RuntimeError("device lost")
            return (yield)

    engine = Engine(SessionStore(tmp_path), plugins=toy_plugins, device="cpu")
    full = engine.create("toy", PARAMS)
    engine.run(full)
    boom = Boom()
    toy_plugins.register(boom, name="boom")
    session = engine.create("toy", PARAMS)
    with pytest.raises(RuntimeError, match="device lost"):
        engine.run(session)
    doc = engine.store.load_doc(session.id)
    assert doc.status == "failed" and "device lost" in doc.error
    assert doc.step_index == 3 and doc.checkpoints[-1].step == 3
    toy_plugins.unregister(boom)
    resumed = Engine(engine.store, plugins=toy_plugins, device="cpu").resume(session.id)
    assert resumed.doc.status == "completed" and resumed.doc.error is None
    assert torch.equal(engine.final_latents(resumed), engine.final_latents(full))


def test_failed_write_leaves_the_old_file_and_no_debris(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    target = tmp_path / "doc.json"
    atomic_write(target, b"good")

    def disk_full(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(OSError, match="No space"):
        atomic_write(target, b"half-written")
    assert target.read_bytes() == b"good"
    assert [p.name for p in tmp_path.iterdir()] == ["doc.json"]
