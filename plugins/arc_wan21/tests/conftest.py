from __future__ import annotations

from pathlib import Path

import pytest

from arc_fabric_core.testing.fixtures import _tiny_cache  # noqa: F401 (one tiny cache per run)


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


@pytest.fixture(scope="session")
def tiny_folder() -> Path:
    from arc_wan21.tiny import ensure_tiny_checkpoint

    return ensure_tiny_checkpoint()
