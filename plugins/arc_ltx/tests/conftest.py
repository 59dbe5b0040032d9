from __future__ import annotations

from pathlib import Path

import pytest

from arc_fabric_core.testing.fixtures import _tiny_cache  # noqa: F401 (one tiny cache per run)


@pytest.fixture
def small() -> dict:
    """Parameters small enough for a 2-core CPU: 9 frames at 96x64, 4 custom timesteps, no CFG."""
    return {
        "prompt": "a red fox in snow",
        "negative_prompt": "blurry",
        "num_frames": 9,
        "height": 64,
        "width": 96,
        "timesteps": [1000, 975, 909, 725],
        "guidance": 1.0,
        "seed": 7,
    }


@pytest.fixture(scope="session")
def tiny_folder() -> Path:
    from arc_ltx.tiny import ensure_tiny_checkpoint

    return ensure_tiny_checkpoint()


@pytest.fixture(scope="session")
def tiny_upsampler() -> Path:
    from arc_ltx.tiny import ensure_tiny_upsampler

    return ensure_tiny_upsampler()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "multiscale: LTX multi-scale (two passes: the engine's arc_passes / arc_next_pass support)"
    )
