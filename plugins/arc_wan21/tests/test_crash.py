"""A session killed with SIGKILL mid-run resumes in another process, bit for bit (UniPC)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from arc_fabric_core.engine import Engine
from arc_fabric_core.store import SessionStore

pytestmark = pytest.mark.slow

CHILD = textwrap.dedent(
    """
    import os, signal, sys, json
    from arc_fabric_core.engine import Engine
    from arc_fabric_core.store import SessionStore

    store, params, kill_at = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3])
    engine = Engine(SessionStore(store), device="cpu")
    session = engine.create("wan21", params, variant="tiny")
    print(session.id, flush=True)

    def die(event):
        if event.step == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)  # no cleanup, no flush: as after a crash

    engine.run(session, listeners=[die])
    """
)


@pytest.mark.parametrize("kill_at", [1, 3, 5])
def test_sigkill_mid_run_then_resume_in_a_new_process(tmp_path: Path, small: dict, kill_at: int) -> None:
    params = {**small, "steps": 6}
    store = tmp_path / "store"
    child = subprocess.run(
        [sys.executable, "-c", CHILD, str(store), json.dumps(params), str(kill_at)],
        capture_output=True,
        text=True,
        timeout=300,
        env=os.environ.copy(),
    )
    assert child.returncode == -signal.SIGKILL, child.stderr
    session_id = child.stdout.split()[0]

    engine = Engine(SessionStore(store), device="cpu")
    doc = engine.store.load_doc(session_id)  # never half-written
    # The store runs at most 5 jobs behind the loop (2 queued, 1 in progress, 2 done but not yet
    # in session.json); those die with it.
    assert max(0, kill_at - 5) <= doc.step_index <= kill_at
    steps_run: list[int] = []
    resumed = engine.resume(session_id, listeners=[lambda ev: steps_run.append(ev.step)])
    assert resumed.doc.status == "completed"
    assert steps_run == list(range(doc.step_index + 1, 7)), "resume must start at the last checkpoint"

    uninterrupted = engine.create("wan21", params, variant="tiny")
    engine.run(uninterrupted)
    assert torch.equal(engine.final_latents(resumed), engine.final_latents(uninterrupted))
