"""Capabilities: what a model declares it supports (or what its hooks imply, when it
declares nothing), checked against its hooks, and read alike by ``plugins``, ``GET
/api/models`` and the server's job checks."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import pytest
from blocks_plugin import Blocks
from declared_plugin import DeclaredBlocks, DeclaredToy
from pydantic import ValidationError

from arc_fabric_core.contract.capabilities import Capabilities, CapabilitiesError
from arc_fabric_core.dispatch.plugins import Plugins
from arc_toy import plugin as toy

PARAMS = {"num_frames": 4, "height": 16, "width": 16, "steps": 4, "prompt": "bands"}
BASE = ["generate", "resume", "fork", "decode"]
# The keys GET /api/models gave before capabilities could be declared: they stay.
OLD_KEYS = {"operations", "autoregressive", "passes", "needs_weights"}


def plugins_with(*extra: tuple[str, Any]) -> Plugins:
    plugins = Plugins(load_entrypoints=False)
    plugins.register(toy, name="toy")
    for name, plugin in extra:
        plugins.register(plugin, name=name)
    return plugins


def test_without_a_declaration_they_come_from_the_hooks_as_before() -> None:
    plugins = plugins_with(("blocks", Blocks()))
    whole, blocks = plugins.capabilities("toy"), plugins.capabilities("blocks")
    assert whole.operations == [*BASE, "edit"]
    assert (whole.edit, whole.masks, whole.extend, whole.rewind, whole.autoregressive) == (
        True,
        True,
        False,
        False,
        False,
    )
    assert (whole.passes, whole.needs_weights, whole.inputs) == (False, False, ())
    assert blocks.operations == [*BASE, "extend", "rewind"]
    assert (blocks.edit, blocks.masks, blocks.autoregressive, blocks.passes) == (False, False, True, True)
    assert set(plugins.describe_model("toy")["capabilities"]) >= OLD_KEYS


def test_a_declaration_is_what_plugins_and_the_api_report(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from fastapi.testclient import TestClient

    from arc_fabric_core.cli import main as cli
    from arc_fabric_core.server.app import create_app
    from arc_fabric_core.server.orchestrator import Settings

    declared = Capabilities(masks=False, inputs=("actions",))
    plugins = plugins_with(
        ("pad", DeclaredToy("pad", declared)), ("stream", DeclaredBlocks("stream", Capabilities(rewind=False)))
    )
    want = {
        "pad": {**Capabilities(edit=True, needs_weights=False, inputs=("actions",)).describe(), "masks": False},
        "stream": Capabilities(extend=True, autoregressive=True, passes=True, needs_weights=False).describe(),
    }
    assert want["pad"]["operations"] == [*BASE, "edit"] and want["stream"]["operations"] == [*BASE, "extend"]

    monkeypatch.setattr(cli, "get_plugins", lambda: plugins)
    cli.main(["plugins"])
    listing = {m["name"]: m for p in json.loads(capsys.readouterr().out) for m in p["models"]}
    app = create_app(Settings(data_dir=tmp_path / "server", device="cpu"), plugins=plugins, start_worker=False)
    with TestClient(app) as client:
        api = {m["name"]: m for m in client.get("/api/models").json()}
        one = client.get("/api/models/pad").json()
    for name, caps in want.items():
        assert listing[name]["capabilities"] == caps, name
        assert api[name]["capabilities"] == caps, name
        assert set(caps) >= OLD_KEYS
    assert one["capabilities"] == want["pad"]
    assert api["pad"]["capabilities"]["inputs"] == ["actions"]


@pytest.mark.parametrize(
    ("owner", "declared", "hook", "says"),
    [
        ("toy", Capabilities(extend=True), "arc_extend_params", "extend=True but its plugin does not implement"),
        ("toy", Capabilities(rewind=True), "arc_rewind_params", "rewind=True but its plugin does not implement"),
        ("toy", Capabilities(autoregressive=True), "arc_extend_params", "the hook that makes a model autoregressive"),
        ("toy", Capabilities(passes=True), "arc_passes", "passes=True but its plugin does not implement"),
        ("blocks", Capabilities(passes=False), "arc_passes", "passes=False but its plugin implements"),
        ("blocks", Capabilities(autoregressive=False), "arc_extend_params", "runs it a block at a time"),
        ("blocks", Capabilities(edit=True), "arc_extend_params", "the engine refuses an edit"),
    ],
)
def test_a_declaration_its_hooks_contradict_names_the_hook(
    owner: str, declared: Capabilities, hook: str, says: str, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    from arc_fabric_core.cli import main as cli

    plugin = DeclaredToy("liar", declared) if owner == "toy" else DeclaredBlocks("liar", declared)
    plugins = plugins_with(("liar-plugin", plugin))
    prefix = re.escape("model 'liar' (plugin 'liar-plugin') declares ")
    with pytest.raises(CapabilitiesError, match=f"^{prefix}.*{re.escape(says)}") as err:
        plugins.model_names()
    assert hook in str(err.value) and err.value.hook == hook
    # The listing fails with that one line, not a traceback.
    monkeypatch.setattr(cli, "get_plugins", lambda: plugins)
    with pytest.raises(SystemExit) as exit_:
        cli.main(["plugins"])
    assert exit_.value.code == 2
    assert capsys.readouterr().err == f"error: {err.value}\n"


def test_declarations_that_contradict_themselves_or_the_spec() -> None:
    for declared, says in [
        (Capabilities(edit=False, masks=True), "declares masks=True without edit"),
        (Capabilities(needs_weights=True), "its ModelSpec says needs_weights=False"),
        (Capabilities(inputs=("image", "image")), "names an input kind twice"),
    ]:
        with pytest.raises(CapabilitiesError, match=says):
            plugins_with(("p", DeclaredToy("odd", declared))).model_names()
    with pytest.raises(ValidationError):
        Capabilities(inputs=("Not A Kind",))
    with pytest.raises(ValidationError):
        Capabilities(edits=True)  # type: ignore[call-arg]  # a misspelt field is no silent default


def wait_job(client: Any, job_id: int) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        job = client.get(f"/api/jobs/{job_id}").json()
        if job["state"] in ("succeeded", "failed", "cancelled"):
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not finish")


def test_the_server_refuses_what_a_declaration_leaves_out(tmp_path: Path) -> None:
    """A model may offer less than its hooks allow; the engine alone would run it, so
    the server refuses it before anything is queued."""
    from fastapi.testclient import TestClient

    from arc_fabric_core.server.app import create_app
    from arc_fabric_core.server.orchestrator import Settings

    plugins = plugins_with(
        ("whole", DeclaredToy("whole", Capabilities(masks=False))),
        ("frozen", DeclaredToy("frozen", Capabilities(edit=False))),
        ("stream", DeclaredBlocks("stream", Capabilities(rewind=False))),
    )
    app = create_app(Settings(data_dir=tmp_path / "server", device="cpu"), plugins=plugins)
    with TestClient(app) as client:

        def session(model: str, **params: Any) -> str:
            job = client.post("/api/sessions", json={"model": model, "params": {**PARAMS, **params}}).json()
            done = wait_job(client, job["id"])
            assert done["state"] == "succeeded", done
            return str(done["session_id"])

        whole, frozen, stream = session("whole"), session("frozen"), session("stream", num_frames=4, steps=2)
        masked = client.post(f"/api/sessions/{whole}/edit", json={"strength": 0.5, "mask": {"rect": [0, 0, 8, 8]}})
        assert masked.status_code == 422, masked.text
        assert masked.json() == {
            "field": "mask",
            "message": "whole edits the whole video only: it takes no mask; drop mask",
        }
        assert client.post(f"/api/sessions/{whole}/edit", json={"strength": 0.5}).status_code == 202
        no_edit = client.post(f"/api/sessions/{frozen}/edit", json={"strength": 0.5})
        assert no_edit.status_code == 409 and "frozen does not offer edit" in no_edit.json()["message"]
        assert client.post(f"/api/sessions/{frozen}/fork", json={"step": 2}).status_code == 202
        no_rewind = client.post(f"/api/sessions/{stream}/rewind", json={"block": 1})
        assert no_rewind.status_code == 409 and "stream does not offer rewind" in no_rewind.json()["message"]
        assert client.post(f"/api/sessions/{stream}/extend", json={"blocks": 1}).status_code == 202


def test_jobs_submit_refuses_what_a_declaration_leaves_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The same check as the server's: a job queued from the command line never reaches a
    worker that would run what the model does not offer."""
    import arc_fabric_core.dispatch.plugins as plugins_module
    from arc_fabric_core.cli.main import main
    from arc_fabric_core.engine.facade import Engine
    from arc_fabric_core.store.files import SessionStore

    plugins = plugins_with(("frozen", DeclaredToy("frozen", Capabilities(edit=False))))
    monkeypatch.setattr(plugins_module, "_plugins", plugins)  # what the CLI's get_plugins() gives
    engine = Engine(SessionStore(tmp_path / "store"), plugins=plugins, device="cpu")
    frozen = engine.run(engine.create("frozen", PARAMS)).id
    queue = ["jobs", "--db", str(tmp_path / "jobs.sqlite"), "--store", str(tmp_path / "store"), "submit"]
    with pytest.raises(SystemExit) as refused:
        main([*queue, "edit", f"session={frozen}", "strength=0.5"])
    assert refused.value.code != 0 and "frozen does not offer edit" in capsys.readouterr().err
    main([*queue, "fork", f"session={frozen}", "step=2"])
    assert "queued (fork" in capsys.readouterr().out
