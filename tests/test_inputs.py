"""Inputs beyond text: declared by the model, checked before anything is written, stored
in the session (content-hashed safetensors, shared by forks), given per chunk to an
autoregressive model, and grown by an extension. The model is ``tests/steered_plugin.py``."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from steered_plugin import Steered

import arc_fabric_core.dispatch.plugins as plugins_module
from arc_fabric_core.contract.errors import InputError
from arc_fabric_core.contract.inputs import InputSpec, load_input
from arc_fabric_core.dispatch.plugins import Plugins
from arc_fabric_core.engine.facade import Engine
from arc_fabric_core.store.files import SessionStore

PARAMS = {"num_frames": 4, "height": 8, "width": 8, "steps": 3, "seed": 5}  # two blocks
ACTIONS = torch.tensor([[0.1, 0.0], [0.2, -0.1], [-0.3, 0.4], [0.0, 0.2]])


@pytest.fixture
def steered() -> Steered:
    return Steered()


@pytest.fixture
def plugins(steered: Steered, monkeypatch: pytest.MonkeyPatch) -> Plugins:
    plugins = Plugins(load_entrypoints=False)
    plugins.register(steered, name="steered")
    monkeypatch.setattr(plugins_module, "_plugins", plugins)  # what the CLI's get_plugins() gives
    return plugins


@pytest.fixture
def engine(tmp_path: Path, plugins: Plugins) -> Engine:
    return Engine(SessionStore(tmp_path / "store"), plugins=plugins, device="cpu")


def _final(engine: Engine, params: dict, inputs: dict) -> torch.Tensor:
    session = engine.create("steered", params, inputs=inputs)
    engine.run(session)
    return engine.final_latents(session)


def test_the_model_lists_its_inputs_and_its_capabilities_their_kinds(plugins: Plugins) -> None:
    described = plugins.describe_model("steered")
    assert [i["name"] for i in described["inputs"]] == ["actions", "image"]
    assert described["inputs"][0]["per_chunk"] == 2 and described["inputs"][0]["shape"] == ["*", 2]
    assert described["inputs"][1]["required"] is False
    assert plugins.capabilities("steered").inputs == ("actions", "image")


def test_inputs_are_stored_content_hashed_and_each_chunk_gets_its_rows(engine: Engine, steered: Steered) -> None:
    session = engine.create("steered", PARAMS, inputs={"actions": ACTIONS.tolist()})
    record = session.doc.inputs["actions"]
    assert record.file.startswith("inputs/") and record.file == f"inputs/{record.sha256}.safetensors"
    assert torch.equal(engine.store.read_inputs(engine.store.load_doc(session.id))["actions"], ACTIONS)
    engine.run(session)
    assert len(steered.seen) == 2 * PARAMS["steps"]
    for pass_index, rows in steered.seen:
        assert torch.equal(rows, ACTIONS[2 * pass_index : 2 * pass_index + 2])
    # The actions steer the video: other actions, another result; the same ones, the same.
    again = _final(engine, PARAMS, {"actions": ACTIONS})
    assert torch.equal(again, engine.final_latents(session))
    assert not torch.equal(_final(engine, PARAMS, {"actions": ACTIONS * 2}), again)


def test_files_of_every_kind_read_as_the_same_input(engine: Engine, tmp_path: Path) -> None:
    np.save(tmp_path / "a.npy", ACTIONS.double().numpy())
    save_file({"whatever": ACTIONS}, str(tmp_path / "a.safetensors"))
    (tmp_path / "a.json").write_text(json.dumps(ACTIONS.tolist()))
    want = _final(engine, PARAMS, {"actions": ACTIONS})
    for name in ("a.npy", "a.safetensors", "a.json"):
        assert torch.equal(_final(engine, PARAMS, {"actions": str(tmp_path / name)}), want), name


def test_an_image_file_is_read_as_rgb_in_0_1_and_steers_the_video(engine: Engine, tmp_path: Path) -> None:
    from PIL import Image

    pixels = np.zeros((8, 8, 3), dtype=np.uint8)
    pixels[:, :4] = (255, 0, 0)
    Image.fromarray(pixels).save(tmp_path / "first.png")
    image = load_input(tmp_path / "first.png", "inputs.image")
    assert image.shape == (3, 8, 8) and image[0, 0, 0] == 1.0 and image[1, 0, 0] == 0.0 and image[0, 0, 7] == 0.0
    with_image = _final(engine, PARAMS, {"actions": ACTIONS, "image": str(tmp_path / "first.png")})
    assert not torch.equal(with_image, _final(engine, PARAMS, {"actions": ACTIONS}))


@pytest.mark.parametrize(
    ("inputs", "field", "says"),
    [
        ({}, "inputs.actions", "steered needs it: actions, shape (2 x chunks, 2)"),
        ({"actions": ACTIONS[:3].tolist()}, "inputs.actions", "must have shape (4, 2) (2 rows for each of 2 chunks)"),
        ({"actions": [[1, 2, 3]] * 4}, "inputs.actions", "must have shape (4, 2)"),
        ({"actions": [[float("nan"), 0]] * 4}, "inputs.actions", "finite numbers only"),
        ({"actions": [["a", 0]] * 4}, "inputs.actions", "a list of numbers"),
        ({"actions": [[0, 0], [0]]}, "inputs.actions", "rectangular"),
        ({"actions": "/nowhere/a.npy"}, "inputs.actions", "no such file"),
        ({"actions": "/nowhere/a.txt"}, "inputs.actions", "allowed: .safetensors, .npy, .json, .png"),
        ({"actions": ACTIONS, "depth": [1]}, "inputs.depth", "its inputs: actions, image"),
        ({"actions": ACTIONS, "image": torch.full((3, 8, 8), 2.0)}, "inputs.image", "at most 1.0"),
        ({"actions": ACTIONS, "image": torch.zeros(3, 16, 8)}, "inputs.image", "must have shape (3, 8, 8)"),
        ({"actions": torch.ones(4, 2, dtype=torch.bool)}, "inputs.actions", "must be float32, got bool"),
    ],
)
def test_bad_inputs_are_refused_naming_the_field_before_any_write(
    engine: Engine, inputs: dict, field: str, says: str
) -> None:
    with pytest.raises(InputError) as caught:
        engine.create("steered", PARAMS, inputs=inputs)
    assert caught.value.field == field and says in str(caught.value)
    assert not engine.store.root.exists() or not any(engine.store.root.iterdir())


def test_a_spec_must_say_how_chunks_split_it() -> None:
    with pytest.raises(ValueError, match=r'dim 0 .* must be "\*"'):
        InputSpec(name="actions", kind="actions", shape=(4, 2), per_chunk=2)
    with pytest.raises(ValueError, match=r"minimum 1\.0 is above maximum 0\.0"):
        InputSpec(name="x", kind="image", shape=(3,), minimum=1.0, maximum=0.0)


def test_a_fork_shares_the_input_file_and_a_resume_is_exact(engine: Engine) -> None:
    whole = engine.create("steered", PARAMS, inputs={"actions": ACTIONS})
    engine.run(whole)
    paused = engine.create("steered", PARAMS, inputs={"actions": ACTIONS})
    engine.run(paused, until=4)  # in the second block
    resumed = engine.run(Engine(engine.store, plugins=engine.plugins, device="cpu").open(paused.id))
    assert torch.equal(engine.final_latents(resumed), engine.final_latents(whole))

    fork = engine.fork(whole.id, 2, {"guidance": 1.0})
    record = fork.doc.inputs["actions"]
    assert record == whole.doc.inputs["actions"]
    files = [engine.store.session_dir(s.id) / record.file for s in (whole, fork)]
    assert os.stat(files[0]).st_ino == os.stat(files[1]).st_ino  # one file, linked
    engine.run(fork)
    assert torch.equal(engine.final_latents(fork), engine.final_latents(whole))
    engine.store.delete(whole.id)
    assert engine.store.read_inputs(engine.store.load_doc(fork.id))["actions"].equal(ACTIONS)
    assert not [g for g in engine.store.gc(dry_run=True) if g.session == fork.id]


def test_an_extension_takes_the_new_blocks_actions_and_equals_generating_at_once(engine: Engine) -> None:
    short = {**PARAMS, "num_frames": 2}
    parent = engine.create("steered", short, inputs={"actions": ACTIONS[:2]})
    engine.run(parent)
    child = engine.extend(parent.id, 1, inputs={"actions": ACTIONS[2:]})
    assert torch.equal(engine.store.read_inputs(child.doc)["actions"], ACTIONS)
    assert child.doc.inputs["actions"].sha256 != parent.doc.inputs["actions"].sha256
    engine.run(child)
    at_once = _final(engine, PARAMS, {"actions": ACTIONS})
    assert torch.equal(engine.final_latents(child), at_once)

    with pytest.raises(InputError, match=r"steered needs it"):
        engine.extend(parent.id, 1)
    with pytest.raises(InputError, match=r"must have shape \(4, 2\)"):
        engine.extend(parent.id, 2, inputs={"actions": ACTIONS[2:]})
    with pytest.raises(InputError, match=r"once for the whole video"):
        engine.extend(parent.id, 1, inputs={"actions": ACTIONS[2:], "image": torch.zeros(3, 8, 8)})


def test_the_api_takes_inputs_as_json_and_the_cli_as_files(
    tmp_path: Path, plugins: Plugins, capsys: pytest.CaptureFixture[str]
) -> None:
    from fastapi.testclient import TestClient

    from arc_fabric_core.cli.main import main
    from arc_fabric_core.server.app import create_app
    from arc_fabric_core.server.orchestrator import Settings

    app = create_app(Settings(data_dir=tmp_path / "api", device="cpu", write_videos=False), plugins=plugins)
    with TestClient(app) as client:
        model = next(m for m in client.get("/api/models").json() if m["name"] == "steered")
        assert [i["name"] for i in model["inputs"]] == ["actions", "image"]
        body = {
            "model": "steered",
            "params": {**PARAMS, "prompt": "steer"},
            "inputs": {"actions": ACTIONS[:3].tolist()},
        }
        bad = client.post("/api/sessions", json=body)
        assert bad.status_code == 422 and bad.json()["field"] == "inputs.actions"
        job = client.post("/api/sessions", json={**body, "inputs": {"actions": ACTIONS.tolist()}}).json()
        for _ in range(600):
            job = client.get(f"/api/jobs/{job['id']}").json()
            if job["state"] in ("succeeded", "failed"):
                break
        assert job["state"] == "succeeded", job
        engine = app.state.orchestrator.engine
        via_api = engine.final_latents(job["session_id"])

    np.save(tmp_path / "actions.npy", ACTIONS.numpy())
    out = tmp_path / "cli"
    argv = ["+model=steered", f"inputs.actions={tmp_path / 'actions.npy'}", f"output_dir={out}"]
    argv += [f"store_dir={tmp_path / 'cli-store'}", "device=cpu", "progress=false"]
    argv += [f"{k}={v}" for k, v in {**PARAMS, "prompt": "steer"}.items()]
    capsys.readouterr()
    try:
        main(argv)
    finally:  # Hydra's log file handler would outlive this test's folder (removed once it passes)
        import logging

        root = logging.getLogger()
        for handler in [h for h in root.handlers if isinstance(h, logging.FileHandler)]:
            if handler.baseFilename.startswith(str(tmp_path)):
                handler.close()
                root.removeHandler(handler)
    assert (out / "video.mp4").is_file()
    store = SessionStore(tmp_path / "cli-store")
    (doc,) = [store.load_doc(p.name) for p in store.root.iterdir()]
    assert torch.equal(store.read_inputs(doc)["actions"], ACTIONS)
    cli_engine = Engine(store, plugins=plugins, device="cpu")
    assert torch.equal(cli_engine.final_latents(doc.id), via_api)


def test_an_extension_keeps_its_start_and_inputs_through_gc_and_repair(engine: Engine) -> None:
    parent = engine.create("steered", {**PARAMS, "num_frames": 2}, inputs={"actions": ACTIONS[:2]})
    engine.run(parent)
    child = engine.extend(parent.id, 1, inputs={"actions": ACTIONS[2:]})
    assert not [g for g in engine.store.gc() if g.session == child.id]  # nothing it names is garbage
    engine.run(engine.open(child.id))
    final = engine.final_latents(child.id)
    (engine.store.session_dir(child.id) / "session.json").write_text("{torn")
    doc, notes = engine.store.repair(child.id)
    assert doc.final is not None and doc.extends is not None, notes
    assert torch.equal(engine.store.read_inputs(doc)["actions"], ACTIONS)
    assert torch.equal(engine.final_latents(child.id), final)


def test_sessions_extend_and_jobs_submit_take_inputs(
    tmp_path: Path, engine: Engine, capsys: pytest.CaptureFixture[str]
) -> None:
    """The extend subcommand's ``--inputs`` and the job key ``inputs=`` come from the
    request's field (derived, no CLI code of their own)."""
    from arc_fabric_core.cli.main import main

    parent = engine.create("steered", {**PARAMS, "num_frames": 2}, inputs={"actions": ACTIONS[:2]})
    engine.run(parent)
    np.save(tmp_path / "next.npy", ACTIONS[2:].numpy())
    store = ["--store", str(engine.store.root)]
    capsys.readouterr()
    with pytest.raises(SystemExit):
        main(["sessions", *store, "extend", parent.id, "--blocks", "1", "--no-video"])
    assert "inputs.actions: steered needs it" in capsys.readouterr().err
    given = json.dumps({"actions": str(tmp_path / "next.npy")})
    main(["sessions", *store, "extend", parent.id, "--blocks", "1", "--inputs", given, "--no-video"])
    out = capsys.readouterr().out
    child = next(d for d in (engine.store.load_doc(p.name) for p in engine.store.root.iterdir()) if d.parent)
    assert f"extend: {child.id} from {parent.id}, 1 more blocks" in out
    main(["sessions", *store, "show", child.id])
    assert f"input     actions: shape (4, 2), {child.inputs['actions'].file}" in capsys.readouterr().out
    assert torch.equal(engine.final_latents(child.id), _final(engine, PARAMS, {"actions": ACTIONS}))

    queue = ["jobs", "--db", str(tmp_path / "jobs.sqlite"), *store, "submit"]
    with pytest.raises(SystemExit):
        main([*queue, "extend", f"session={parent.id}", "blocks=1", f"inputs={json.dumps({'actions': [[0, 0]]})}"])
    assert "inputs.actions: must have shape (2, 2)" in capsys.readouterr().err
    main([*queue, "extend", f"session={parent.id}", "blocks=1", f"inputs={given}"])
    assert "queued (extend" in capsys.readouterr().out
