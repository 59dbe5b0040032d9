"""Run the command line as a user would: a fresh process, no configured weights."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def run_cli(
    *args: str, cwd: Path, env: dict[str, str] | None = None, timeout: int = 300
) -> subprocess.CompletedProcess:
    """``python -m arc_fabric_core ARGS`` in ``cwd``, output captured.

    Weights folders configured in the environment (``ARC_*_WEIGHTS``) are dropped, so
    every model runs its tiny variant, and so are the store and queue locations, so
    both default to ``outputs/`` under ``cwd``; ``env`` is laid over the result.
    """
    base = {
        k: v
        for k, v in os.environ.items()
        if not (k.startswith("ARC_") and k.endswith("_WEIGHTS")) and k not in ("ARC_FABRIC_STORE", "ARC_FABRIC_QUEUE")
    }
    return subprocess.run(
        [sys.executable, "-m", "arc_fabric_core", *args],
        cwd=cwd,
        env={**base, "HYDRA_FULL_ERROR": "0", **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
