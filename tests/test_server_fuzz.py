"""Fuzz every route of the OpenAPI spec: whatever a client sends, the answer is never a 5xx."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, settings  # noqa: E402

from arc_fabric_core.dispatch.plugins import Plugins  # noqa: E402
from arc_fabric_core.server.app import create_app  # noqa: E402
from arc_fabric_core.server.orchestrator import Settings  # noqa: E402


def _app(tmp: Path):
    import sys

    toy = Path(__file__).resolve().parents[1] / "examples" / "arc_toy"
    if str(toy) not in sys.path:
        sys.path.insert(0, str(toy))
    from arc_toy import plugin

    plugins = Plugins(load_entrypoints=False)
    plugins.register(plugin, name="toy")
    # The queue is paused: fuzzed jobs are accepted or refused, never run (that is the API under test).
    app = create_app(Settings(data_dir=tmp, device="cpu"), plugins=plugins, start_worker=False)
    app.state.orchestrator.queue.pause()
    return app


# Removed when the interpreter exits (the schema is built at import, before any fixture).
_DATA = tempfile.TemporaryDirectory(prefix="arc-fuzz-")


def _schema():
    return schemathesis.openapi.from_asgi("/openapi.json", _app(Path(_DATA.name)))


SCHEMA = _schema()
OPERATIONS = {op.label: op for op in (r.ok() for r in SCHEMA.get_all_operations())}


# Invalid input needs an input: operations that take none are fuzzed with valid requests only.
CASES = [
    (label, mode)
    for label, op in sorted(OPERATIONS.items())
    for mode in ("positive", "negative")
    if mode == "positive" or len(op.path_parameters) + len(op.query) + len(op.body)
]


@pytest.mark.slow
@pytest.mark.parametrize(("label", "mode"), CASES)
def test_no_input_makes_a_server_error(label: str, mode: str) -> None:
    """Generated requests to one operation — valid per the spec, and deliberately
    invalid ones — get a 2xx or a 4xx, never a 5xx."""
    from hypothesis import given
    from schemathesis import GenerationMode

    failures: list[str] = []

    @given(case=OPERATIONS[label].as_strategy(GenerationMode(mode)))
    @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    def run(case) -> None:
        response = case.call()
        if response.status_code >= 500:
            failures.append(f"{case.method} {case.formatted_path} {case.body!r} -> {response.status_code}")

    run()
    assert failures == []
