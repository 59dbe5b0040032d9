"""Ctrl-C during a run says which session is paused, where, and how to go on."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def test_ctrl_c_names_the_paused_session_and_how_to_resume(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not (k.startswith("ARC_") and k.endswith("_WEIGHTS"))}
    env.pop("ARC_FABRIC_STORE", None)
    args = ["+model=wan21", "num_frames=5", "height=32", "width=32", "steps=400", "output_dir=out"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "arc_fabric_core", *args],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # A suite started in the background by a script inherits SIGINT ignored (POSIX), and
        # Python then keeps ignoring it: the run under test gets the default, as from a terminal.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    # Generous: on a loaded 2-core machine (CI runs the newcomer's install beside the suite)
    # the first 40 steps have taken minutes. Interrupting earlier would test nothing.
    deadline = time.monotonic() + 600
    assert proc.stderr is not None
    seen: list[str] = []
    for line in proc.stderr:  # progress lines: one per 10% of the steps
        seen.append(line)
        if line.startswith("step 40/400"):
            break
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"no 'step 40/400' in 10 minutes; stderr so far: {''.join(seen)[-2000:]}")
    else:
        proc.wait(timeout=60)
        pytest.fail(f"the run ended before step 40 (exit {proc.returncode}): {''.join(seen)[-2000:]}")
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    session = re.search(r"^session:\s+(\S+)", out, re.M)
    match = re.search(r"^error: interrupted; session (\S+) is paused at step (\d+): `sessions resume (\S+)`", err, re.M)
    assert match, err
    assert match.group(1) == match.group(3) and (tmp_path / "outputs" / "sessions" / match.group(1)).is_dir()
    assert session is None  # it never finished
    show = subprocess.run(
        [sys.executable, "-m", "arc_fabric_core", "sessions", "show", match.group(1)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "paused" in show.stdout and int(match.group(2)) >= 40, show.stdout
