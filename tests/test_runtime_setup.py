"""One runtime configuration: every entry point (the generate command line, ``sessions``,
``jobs work``, the server, a worker process) builds its cache, engine and executor
through :mod:`arc_fabric_core.jobs.runtime_setup`, and executors are found by name in the
``arc_fabric.executors`` entry-point group, a third-party one included."""

from __future__ import annotations

import errno
import tomllib
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

import fake_executor  # tests/, on the path too
import pytest

import arc_fabric_core.dispatch.plugins as plugins_module
from arc_fabric_core.cli.main import main
from arc_fabric_core.contract.errors import ArcFabricError, InputError, OutputError
from arc_fabric_core.dispatch.plugins import Plugins
from arc_fabric_core.engine.facade import Engine
from arc_fabric_core.jobs import runtime_setup
from arc_fabric_core.jobs.executors import InProcessExecutor, SubprocessExecutor, error_event, remote_error
from arc_fabric_core.jobs.queue import JobQueue, JobRunner
from arc_fabric_core.jobs.runtime_setup import (
    BUILT_IN_EXECUTORS,
    EXECUTOR_GROUP,
    RuntimeSettings,
    build_executor,
    executor_factory,
    executor_names,
    process_cache,
)
from arc_toy import plugin as toy  # on the path: conftest puts it there

ROOT = Path(__file__).resolve().parents[1]
PARAMS = {"num_frames": 2, "height": 8, "width": 8, "steps": 4}
SMALL = ["+model=toy", "num_frames=2", "height=8", "width=8", "steps=2"]
GIB = 1024**3


def with_entry_points(monkeypatch: pytest.MonkeyPatch, *entries: tuple[str, str]) -> None:
    """The installed ``arc_fabric.executors`` entry points are ``entries`` (name, value)
    and nothing else; every other group is as installed."""
    installed = metadata.entry_points

    def entry_points(**params: Any) -> Any:
        if params.get("group") == EXECUTOR_GROUP:
            return metadata.EntryPoints(metadata.EntryPoint(n, v, EXECUTOR_GROUP) for n, v in entries)
        return installed(**params)

    monkeypatch.setattr(metadata, "entry_points", entry_points)


@pytest.fixture
def recording(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[fake_executor.RecordingExecutor]]:
    """A third-party executor, ``recording``, installed beside the core's own."""
    with_entry_points(
        monkeypatch,
        ("inprocess", "arc_fabric_core.jobs.runtime_setup:inprocess_executor"),
        ("subprocess", "arc_fabric_core.jobs.runtime_setup:subprocess_executor"),
        ("recording", "fake_executor:make_executor"),
    )
    fake_executor.MADE.clear()
    yield fake_executor.MADE
    fake_executor.MADE.clear()


@pytest.fixture
def toy_installed(monkeypatch: pytest.MonkeyPatch) -> Plugins:
    """The process's plugins are the toy only (what the command line and a worker find)."""
    plugins = Plugins(load_entrypoints=False)
    plugins.register(toy, name="toy")
    monkeypatch.setattr(plugins_module, "_plugins", plugins)
    return plugins


@pytest.fixture
def built(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, RuntimeSettings]]:
    """Every call of the builder's functions, with the settings it was given."""
    calls: list[tuple[str, RuntimeSettings]] = []
    for name in ("build_cache", "build_engine", "build_executor"):
        original = getattr(runtime_setup, name)

        def spy(settings: RuntimeSettings, *args: Any, _original: Any = original, _name: str = name, **kw: Any) -> Any:
            calls.append((_name, settings))
            return _original(settings, *args, **kw)

        monkeypatch.setattr(runtime_setup, name, spy)
    return calls


def named(calls: list[tuple[str, RuntimeSettings]], name: str) -> list[RuntimeSettings]:
    return [settings for called, settings in calls if called == name]


# ---------------------------------------------------------------- the executor registry


def test_the_built_in_executors_are_there_without_installed_entry_points(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, toy_engine: Engine
) -> None:
    with_entry_points(monkeypatch)  # a checkout run from its folder: no metadata names them
    assert executor_names() == ["inprocess", "subprocess"]
    inprocess = build_executor(RuntimeSettings(store_dir=tmp_path, videos=True), lambda: toy_engine)
    assert isinstance(inprocess, InProcessExecutor) and inprocess.engine is toy_engine and inprocess.videos
    workers = build_executor(RuntimeSettings(store_dir=tmp_path, executor="subprocess", device="cpu"))
    assert isinstance(workers, SubprocessExecutor) and workers.store_dir == tmp_path and workers.device == "cpu"


def test_the_package_registers_the_built_in_executors_under_their_names() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    entries = project["entry-points"][EXECUTOR_GROUP]
    assert sorted(entries) == sorted(BUILT_IN_EXECUTORS)
    for name, value in entries.items():
        assert metadata.EntryPoint(name, value, EXECUTOR_GROUP).load() is BUILT_IN_EXECUTORS[name]


def test_an_unknown_executor_is_refused_naming_the_allowed_ones(monkeypatch: pytest.MonkeyPatch, recording) -> None:
    with pytest.raises(InputError) as info:
        build_executor(RuntimeSettings(executor="ray"))
    assert info.value.field == "executor"
    assert info.value.message == "unknown executor 'ray'; allowed: inprocess, subprocess, recording"
    with_entry_points(monkeypatch)
    with pytest.raises(InputError, match=r"unknown executor 'ray'; allowed: inprocess, subprocess$"):
        executor_factory("ray")


def test_an_executor_that_cannot_load_is_one_line_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    with_entry_points(monkeypatch, ("broken", "arc_no_such_package:make"))
    assert "broken" in executor_names()
    with pytest.raises(ArcFabricError) as info:
        build_executor(RuntimeSettings(executor="broken"))
    said = str(info.value)
    assert said.startswith("executor 'broken' (arc_no_such_package:make) could not be loaded: ModuleNotFoundError")
    assert "\n" not in said


def test_a_third_party_executor_is_selected_by_name(recording, tmp_path: Path, toy_engine: Engine) -> None:
    assert executor_names() == ["inprocess", "subprocess", "recording"]
    settings = RuntimeSettings(store_dir=toy_engine.store.root, executor="recording", previews=True)
    executor = build_executor(settings, lambda: toy_engine)
    assert recording == [executor] and executor.settings is settings and executor.engine is toy_engine
    queue = JobQueue(tmp_path / "jobs.sqlite")
    queue.submit("generate", {"model": "toy", "params": PARAMS})
    done = JobRunner(queue, executor=executor).run_next()
    assert done is not None and done.state == "succeeded", done
    assert executor.kinds == ["generate"]


def test_jobs_work_runs_with_the_executor_it_names(
    recording, toy_installed: Plugins, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    jobs = ["jobs", "--db", str(tmp_path / "jobs.sqlite"), "--store", str(tmp_path / "store")]
    main([*jobs, "submit", "generate", "model=toy", *(f"{k}={v}" for k, v in PARAMS.items())])
    main([*jobs, "work", "--executor", "recording", "--device", "cpu", "--model-memory", "1G"])
    out = capsys.readouterr().out
    assert "job 1: succeeded" in out and "1 jobs run" in out, out
    (executor,) = recording
    assert executor.kinds == ["generate"]
    assert (executor.settings.store_dir, executor.settings.device) == (tmp_path / "store", "cpu")
    # Its engine is the one the settings describe: the budget reached its cache.
    assert executor.settings.model_memory == GIB and executor.engine.cache.budget_bytes == GIB


def test_the_server_runs_its_jobs_and_decodes_with_the_executor_its_settings_name(
    recording, tmp_path: Path, toy_plugins: Plugins
) -> None:
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from arc_fabric_core.server.app import create_app
    from arc_fabric_core.server.orchestrator import Settings

    settings = Settings(data_dir=tmp_path / "server", device="cpu", executor="recording", gpu_poll_seconds=60)
    app = create_app(settings, plugins=toy_plugins)
    with TestClient(app) as client:
        assert client.get("/api/health").json()["executor"] == "recording"
        job = client.post("/api/sessions", json={"model": "toy", "params": PARAMS}).json()
        decoded = client.post(f"/api/sessions/{wait(client, job['id'])['session_id']}/decode", json={"step": 2})
        assert decoded.status_code == 200, decoded.text
    (executor,) = recording
    orchestrator = app.state.orchestrator
    assert executor.kinds == ["generate", "decode"]
    assert executor.engine is orchestrator.engine and executor.settings == settings.runtime()


def wait(client: Any, job_id: int, timeout: float = 60) -> dict[str, Any]:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/api/jobs/{job_id}").json()
        if job["state"] in ("succeeded", "failed", "cancelled"):
            assert job["state"] == "succeeded", job["error"]
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} still {job['state']}")


# ---------------------------------------------------------------- every entry point builds through it


def test_generation_builds_through_the_runtime_and_a_multirun_shares_one_cache(
    built, toy_installed: Plugins, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    store = tmp_path / "store"
    argv = ["-m", *SMALL, "seed=0,1", f"store_dir={store}", f"output_dir={tmp_path / 'out'}", "device=cpu"]
    main([*argv, "model_memory=2G", "checkpoint_every=2"])
    out = capsys.readouterr().out
    (settings,) = named(built, "build_engine")  # one engine for both jobs of the sweep
    assert (settings.store_dir, settings.device, settings.checkpoint_every) == (store, "cpu", 2)
    assert settings.model_memory == 2 * GIB
    # Its cache is the process's: the second job finds the model warm.
    assert out.count("loaded toy/default on cpu") == 1 and out.count("toy/default already warm") == 1, out
    cache = process_cache(settings, toy_installed)
    assert [s.loads for s in cache.states()] == [1] and cache.budget_bytes == 2 * GIB


def test_sessions_commands_build_through_the_runtime(
    built, toy_installed: Plugins, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from arc_fabric_core.jobs.runtime_setup import build_engine

    store = tmp_path / "store"
    engine = build_engine(RuntimeSettings(store_dir=store, device="cpu"), toy_installed)
    session = engine.run(engine.create("toy", PARAMS))
    built.clear()
    main(["sessions", "--store", str(store), "--device", "cpu", "decode", session.id])
    assert "video:" in capsys.readouterr().out
    (settings,) = named(built, "build_engine")
    assert (settings.store_dir, settings.device, settings.dtype) == (store, "cpu", "auto")


def test_the_server_builds_through_the_runtime(built, tmp_path: Path, toy_plugins: Plugins) -> None:
    from arc_fabric_core.server.orchestrator import Orchestrator, Settings

    settings = Settings(data_dir=tmp_path / "server", device="cpu", model_memory=2 * GIB, cpu_tier=GIB)
    orchestrator = Orchestrator(settings, plugins=toy_plugins)
    runtime = settings.runtime()
    assert named(built, "build_cache") == [runtime] and named(built, "build_executor") == [runtime]
    assert named(built, "build_engine") == [runtime]
    assert runtime.store_dir == tmp_path / "server" / "sessions" and runtime.videos and runtime.previews
    assert orchestrator.engine.cache is orchestrator.cache and orchestrator.executor.engine is orchestrator.engine
    assert (orchestrator.cache.budget_bytes, orchestrator.cache.cpu_tier_bytes) == (2 * GIB, GIB)


def test_a_worker_process_builds_through_the_runtime(built, toy_installed: Plugins, tmp_path: Path) -> None:
    from arc_fabric_core.jobs.worker import Worker

    worker = Worker(str(tmp_path / "store"), "cpu", "float32", model_memory="1G", cpu_tier="512M")
    (settings,) = named(built, "build_engine")
    assert (settings.store_dir, settings.device, settings.dtype) == (tmp_path / "store", "cpu", "float32")
    assert (settings.model_memory, settings.cpu_tier) == (GIB, GIB // 2)
    assert worker.engine.cache.budget_bytes == GIB and worker.engine.cache.cpu_tier_bytes == GIB // 2
    assert worker.engine.plugins is toy_installed


def test_the_subprocess_executor_hands_its_settings_to_the_workers(tmp_path: Path) -> None:
    settings = RuntimeSettings(
        store_dir=tmp_path,
        device="cpu",
        dtype="float32",
        executor="subprocess",
        model_memory=GIB,
        cpu_tier=2 * GIB,
        pythons={"toy": "/envs/toy/bin/python"},
        worker_plugins=("arc_toy.plugin",),
        cancel_grace=2.5,
        previews=True,
    )
    workers = build_executor(settings)
    assert isinstance(workers, SubprocessExecutor)
    assert workers.worker_args == ["--plugin", "arc_toy.plugin", "--model-memory", str(GIB), "--cpu-tier", str(2 * GIB)]
    assert workers.pythons == {"toy": "/envs/toy/bin/python"} and (workers.device, workers.dtype) == ("cpu", "float32")
    assert workers.cancel_grace == 2.5 and workers.previews and not workers.videos
    assert workers.workers == {}  # none started: they start with the first job


def test_a_process_keeps_one_cache_per_plugin_manager(toy_plugins: Plugins) -> None:
    first = process_cache(RuntimeSettings(model_memory=GIB), toy_plugins)
    again = process_cache(RuntimeSettings(model_memory=2 * GIB), toy_plugins)
    assert again is first and first.budget_bytes == 2 * GIB  # the newest budget applies
    other = Plugins(load_entrypoints=False)
    assert process_cache(RuntimeSettings(), other) is not first


# ---------------------------------------------------------------- a worker's errors keep their kind


def test_a_workers_error_is_rebuilt_with_its_kind() -> None:
    full = OutputError("/store/s/video.mp4", "file too large", errno.EFBIG)
    error = remote_error(error_event(full))
    assert str(error) == "OutputError: cannot write /store/s/video.mp4: file too large"  # the job's line as before
    cause = error.__cause__
    assert isinstance(cause, OutputError) and cause.out_of_space and str(cause) == str(full)
    bad = remote_error(error_event(InputError("step", "no checkpoint at step 9")))
    assert isinstance(bad.__cause__, InputError) and (bad.__cause__.field, bad.__cause__.message) == (
        "step",
        "no checkpoint at step 9",
    )
    other = remote_error(error_event(RuntimeError("the model broke")))
    assert str(other) == "RuntimeError: the model broke" and other.__cause__ is None
