"""A test plugin that owns no model: it makes a denoising step hang, in a worker process.

A worker registers it with ``--plugin stall_plugin`` (this folder on its PYTHONPATH).
With ``ARC_TEST_STALL_FILE`` set, the step at index ``ARC_TEST_STALL_AT`` (default 0)
and every later one wait while that file exists; the first wait touches
``<file>.stalled``, so a test knows the worker is stuck before it cancels.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from arc_fabric_core.contract.hookspecs import hookimpl
from arc_fabric_core.contract.schedule import StepContext


@hookimpl(wrapper=True)
def arc_denoise_step(step: StepContext) -> Any:
    flag = os.environ.get("ARC_TEST_STALL_FILE")
    if flag and step.index >= int(os.environ.get("ARC_TEST_STALL_AT", "0")) and Path(flag).exists():
        Path(f"{flag}.stalled").touch()
        while Path(flag).exists():
            time.sleep(0.05)
    return (yield)
