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

from arc_fabric_core.engine.facade import Engine
from arc_fabric_core.store.files import SessionStore

pytestmark = pytest.mark.slow

CHILD = textwrap.dedent(
    """
    import os, signal, sys, json
    from arc_fabric_core.engine.facade import Engine
    from arc_fabric_core.engine.hybrid import HybridSpec
    from arc_fabric_core.store.files import SessionStore

    store, params, kill_at = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3])
    hybrid = HybridSpec(**json.loads(sys.argv[4])) if sys.argv[4] != "null" else None
    engine = Engine(SessionStore(store), device="cpu")
    session = engine.create("wan21", params, variant="tiny", hybrid=hybrid)
    print(session.id, flush=True)

    def die(event):
        if event.step == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)  # no cleanup, no flush: as after a crash

    engine.run(session, listeners=[die])
    """
)


# A two-model hybrid handing over at step 3: killed before, at and after the hand-off.
HYBRID = {"stages": [{"variant": "tiny"}, {"variant": "tiny-14b"}], "boundary": 3, "unit": "step"}


@pytest.mark.parametrize(
    ("kill_at", "hybrid"),
    [(1, None), (3, None), (5, None), (2, HYBRID), (3, HYBRID), (4, HYBRID)],
    ids=["1", "3", "5", "hybrid-2", "hybrid-3", "hybrid-4"],
)
def test_sigkill_mid_run_then_resume_in_a_new_process(
    tmp_path: Path, small: dict, kill_at: int, hybrid: dict | None
) -> None:
    from arc_fabric_core.engine.hybrid import HybridSpec

    params = {**small, "steps": 6}
    store = tmp_path / "store"
    child = subprocess.run(
        [sys.executable, "-c", CHILD, str(store), json.dumps(params), str(kill_at), json.dumps(hybrid)],
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

    spec = HybridSpec(**hybrid) if hybrid is not None else None
    uninterrupted = engine.create("wan21", params, variant="tiny", hybrid=spec)
    engine.run(uninterrupted)
    assert torch.equal(engine.final_latents(resumed), engine.final_latents(uninterrupted))
