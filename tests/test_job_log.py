"""A job's log says what the runtime did for it: which model it loaded (or found warm),
what it evicted to make room, and where its steps went."""

from __future__ import annotations

import re
from pathlib import Path

from arc_fabric_core.dispatch.plugins import Plugins
from arc_fabric_core.engine.facade import Engine
from arc_fabric_core.jobs.executors import InProcessExecutor
from arc_fabric_core.runtime.model_cache import ModelCache
from arc_fabric_core.store.files import SessionStore
from arc_fabric_core.testing.sized import MIB, SizedModels


def test_a_jobs_log_names_its_loads_and_evictions(tmp_path: Path) -> None:
    plugin = SizedModels(tmp_path / "weights", {"a": 6 * MIB, "b": 6 * MIB})
    plugins = Plugins(load_entrypoints=False)
    plugins.register(plugin, name="sized")
    cache = ModelCache(plugins, budget_bytes=8 * MIB)  # room for one of them
    executor = InProcessExecutor(Engine(SessionStore(tmp_path / "store"), plugins=plugins, device="cpu", cache=cache))

    def run(model: str, **payload: object) -> tuple[str, list[str]]:
        lines: list[str] = []
        ids: list[str] = []
        job = {"model": model, "params": {"steps": 4}, "weights": str(plugin.folder(model)), **payload}
        executor.run("generate", job, on_session=ids.append, stop=lambda: False, on_log=lines.append)
        return ids[0], lines

    first, said = run("a")
    assert said[:2] == [
        f"session {first}: generate with a/default, steps 0→4 of 4",
        "loading a/default onto cpu (about 6.0 MiB)",
    ]
    assert re.fullmatch(r"loaded a/default on cpu in \d+\.\d\d s \(6\.0 MiB\)", said[2]) and len(said) == 3

    second, said = run("b")
    assert said[0].startswith(f"session {second}: ")
    assert said[1:3] == [
        "evicted a/default from cpu to make room (6.0 MiB)",
        "loading b/default onto cpu (about 6.0 MiB)",
    ]
    assert said[3].startswith("loaded b/default on cpu in ")

    # Warm: nothing to load, nothing to say but the session.
    third, said = run("b", until=2)
    assert said == [
        f"session {third}: generate with b/default, steps 0→2 of 4",
        "paused at step 2 of 4 (checkpointed)",
    ]
