from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture
def small() -> dict:
    """Parameters small enough for a 2-core CPU; CFG on."""
    return {
        "prompt": "a red fox in snow",
        "negative_prompt": "blurry",
        "num_frames": 9,
        "height": 32,
        "width": 32,
        "steps": 4,
        "guidance": 5.0,
        "seed": 7,
    }


@pytest.fixture(scope="session", autouse=True)
def _tiny_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    # Share one tiny checkpoint across the run unless the developer set a cache.
    if "ARC_FABRIC_CACHE" not in os.environ:
        os.environ["ARC_FABRIC_CACHE"] = str(tmp_path_factory.mktemp("arc_cache"))


@pytest.fixture(scope="session")
def tiny_folder(_tiny_cache: None) -> Path:
    from arc_wan21.tiny import ensure_tiny_checkpoint

    return ensure_tiny_checkpoint()
