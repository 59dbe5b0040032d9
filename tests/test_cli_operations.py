"""The command line is derived from the operations registry: every operation on a
stored session has its ``sessions`` subcommand and every operation is a ``jobs submit``
kind, the built-in ones spelt by their own classes; a new request field is a flag and a
job key with no CLI edit; an operation that runs no loop is carried out by its own
``execute``, from a job and from ``sessions`` alike."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import pytest
from pydantic import Field
from retry_operation import RetryPlugin
from test_plugin_operation import _cli

import arc_fabric_core.dispatch.plugins as plugins_module
from arc_fabric_core.cli import jobs as jobs_cli
from arc_fabric_core.cli import sessions as sessions_cli
from arc_fabric_core.contract.command_line import Argument
from arc_fabric_core.contract.hookspecs import hookimpl
from arc_fabric_core.contract.operations import Executed, OperationSpec, Request
from arc_fabric_core.dispatch.plugins import Plugins
from arc_fabric_core.engine.facade import Engine
from arc_fabric_core.jobs.kinds import kinds
from arc_fabric_core.operations.extend import Extend, ExtendRequest
from arc_fabric_core.store.files import SessionStore
from arc_toy import plugin as toy

PARAMS = {"num_frames": 2, "height": 8, "width": 8, "steps": 3, "seed": 1}


class NoteRequest(Request):
    text: str = Field(description="What the note says")


class Note(OperationSpec):
    """An operation that runs no loop: a note written into the session's folder."""

    name = "note"
    summary = "write a note beside a session"
    Request = NoteRequest
    runs = False
    in_place = True  # it works on the session it names

    def applies_to(self, capabilities: Any) -> bool:
        return True

    def check(self, engine: Any, request: Any, session: str | None = None) -> Any:
        return engine.store.load_doc(session), request.text

    def create(self, engine: Any, plan: Any) -> Any:
        return engine.open(plan[0].id)

    def execute(self, engine: Any, plan: Any, session: Any, say: Any) -> Executed:
        (engine.store.session_dir(session.id) / "note.txt").write_text(plan[1])
        say(f"noted {plan[1]!r}")
        return Executed(session.step_index)


class NotePlugin:
    @hookimpl
    def arc_register_operations(self, register: Any) -> None:
        register(Note())


@pytest.fixture
def plugins(monkeypatch: pytest.MonkeyPatch) -> Plugins:
    plugins = Plugins(load_entrypoints=False)
    plugins.register(toy, name="toy")
    plugins.register(RetryPlugin(), name="retry")
    plugins.register(NotePlugin(), name="note")
    monkeypatch.setattr(plugins_module, "_plugins", plugins)  # what the CLI's get_plugins() gives
    return plugins


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    (action,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(action.choices)


def test_every_operation_on_a_session_has_a_sessions_subcommand(plugins: Plugins) -> None:
    ops = plugins.operations()
    commands = _subcommands(sessions_cli._parser())
    derived = {name for name, op in ops.items() if op.on_session and name != "hand-off"}
    assert {"resume", "fork", "edit", "extend", "rewind", "decode", "retry", "note"} <= derived
    assert set(commands) == derived | sessions_cli.COMMANDS
    assert "hand-off" not in commands and "generate" not in commands  # `fork --hand-off`; the main command


def test_every_operation_is_a_jobs_submit_kind(plugins: Plugins) -> None:
    submit = _subcommands(jobs_cli._parser())["submit"]
    (kind,) = [a for a in submit._actions if a.dest == "kind"]
    assert list(kind.choices) == list(plugins.operations())
    for name, op in plugins.operations().items():
        payload = jobs_cli.payload_from(name, ["session=20261127-044059-1d676c07"] if op.on_session else ["model=toy"])
        required, optional = kinds(plugins)[name]
        assert set(payload) <= required | optional, name


def test_a_built_in_subcommand_is_spelt_by_its_operation_class(
    plugins: Plugins, monkeypatch: pytest.MonkeyPatch
) -> None:
    commands = _subcommands(sessions_cli._parser())
    for name, op in sessions_cli._operations().items():
        own = argparse.ArgumentParser()
        op.cli_arguments(own)
        spelt = {(a.dest, tuple(a.option_strings), a.help) for a in own._actions if a.dest != "help"}
        listed = {(a.dest, tuple(a.option_strings), a.help) for a in commands[name]._actions}
        assert spelt <= listed, name
    # The class's spelling is what the subcommand says.
    flags = {**Extend.cli_flags, "blocks": Argument(required=True, help="how many blocks to add")}
    monkeypatch.setattr(Extend, "cli_flags", flags)
    (blocks,) = [a for a in _subcommands(sessions_cli._parser())["extend"]._actions if a.dest == "blocks"]
    assert (blocks.option_strings, blocks.required, blocks.help) == (["--blocks"], True, "how many blocks to add")
    # The fork's flags that are no field of its request are its own too.
    fork = commands["fork"].parse_args(["ID", "seed=3", "--step", "2", "--stage", "1=wan21/tiny"])
    assert plugins.operation("fork").cli_request(fork) == {"step": 2, "overrides": {"seed": 3}}
    assert fork.stage == ["1=wan21/tiny"] and fork.hand_off is None


def test_a_new_request_field_is_a_flag_and_a_job_key(plugins: Plugins, monkeypatch: pytest.MonkeyPatch) -> None:
    class WithInputs(ExtendRequest):
        inputs: dict[str, str] | None = Field(None, description="Named input files")

    monkeypatch.setattr(Extend, "Request", WithInputs)
    extend = _subcommands(sessions_cli._parser())["extend"]
    args = extend.parse_args(["ID", "--blocks", "2", "--inputs", '{"first": "a.png"}'])
    assert plugins.operation("extend").cli_request(args) == {"blocks": 2, "inputs": {"first": "a.png"}}
    assert "--inputs" in extend.format_help() and "Named input files" in extend.format_help()
    payload = jobs_cli.payload_from("extend", ["session=x", "blocks=2", "inputs={first:a.png}"])
    assert payload == {"session": "x", "blocks": 2, "inputs": {"first": "a.png"}}
    assert "inputs" in kinds(plugins)["extend"][1]


def test_jobs_submit_types_a_key_from_its_request_field(plugins: Plugins) -> None:
    assert jobs_cli.payload_from("resume", ["session=12345678", "until=3.0"]) == {"session": "12345678", "until": 3}
    assert jobs_cli.payload_from("extend", ["session=x", "prompt=123"]) == {"session": "x", "prompt": "123"}
    payload = jobs_cli.payload_from("edit", ["session=x", "strength=0.5", "rect=0,0,8,8", "seed=2"])
    assert payload == {"session": "x", "strength": 0.5, "mask": {"rect": [0, 0, 8, 8]}, "overrides": {"seed": 2}}
    for items, says in [
        (["session=x", "until=2.5"], "until: must be a whole number, got 2.5"),
        (["session=x", "colour=1"], "colour: unknown for a resume job; allowed: session, until"),
    ]:
        with pytest.raises(Exception, match=says):
            jobs_cli.payload_from("resume", items)
    with pytest.raises(Exception, match=r"strength: must be a number in \(0, 1\], got 'abc'"):
        jobs_cli.payload_from("edit", ["session=x", "strength=abc"])


def test_an_operation_that_runs_no_loop_is_carried_out_by_its_execute(
    tmp_path: Path, plugins: Plugins, capsys: pytest.CaptureFixture[str]
) -> None:
    store, db = tmp_path / "sessions", tmp_path / "jobs.sqlite"
    engine = Engine(SessionStore(store), plugins=plugins, device="cpu")
    session = engine.run(engine.create("toy", PARAMS))
    note = engine.store.session_dir(session.id) / "note.txt"

    code, out, err = _cli(
        capsys, "sessions", "--store", str(store), "--device", "cpu", "note", session.id[-8:], "--text", "hello"
    )
    assert code == 0, err
    assert out == f"note: session {session.id} at step 3\n" and note.read_text() == "hello"

    jobs = ["jobs", "--db", str(db), "--store", str(store)]
    code, out, err = _cli(capsys, *jobs, "submit", "note", f"session={session.id}", "text=again")
    assert code == 0 and "queued (note" in out, err
    code, out, err = _cli(capsys, *jobs, "work", "--device", "cpu")
    assert code == 0, err
    assert "noted 'again'" in out and f"succeeded session {session.id}" in out
    assert note.read_text() == "again"


def test_the_queue_knows_an_in_place_jobs_session_and_requeues_it_as_itself(tmp_path: Path, plugins: Plugins) -> None:
    from arc_fabric_core.jobs.queue import JobQueue, JobState

    engine = Engine(SessionStore(tmp_path / "store"), plugins=plugins, device="cpu")
    session = engine.run(engine.create("toy", {"num_frames": 2, "height": 8, "width": 8, "steps": 2}))
    queue = JobQueue(tmp_path / "jobs.sqlite", plugins=plugins)
    note = queue.submit("note", {"session": session.id, "text": "hi"})
    fork = queue.submit("fork", {"session": session.id, "step": 1})
    assert note.session_id == session.id and fork.session_id is None  # a fork's session is made when it runs
    claimed = queue.claim()
    assert claimed is not None and claimed.id == note.id
    queue.finish(note.id, JobState.FAILED, error="broken")
    again = queue.requeue(note.id)
    assert again.kind == "note" and again.payload == {"session": session.id, "text": "hi"}  # not a resume
