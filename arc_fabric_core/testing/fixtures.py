"""pytest fixtures for plugin test suites: import them into a conftest.py."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(scope="session", autouse=True)
def _tiny_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """One tiny-checkpoint cache for the whole run, in a temporary folder, unless the
    developer set ``ARC_FABRIC_CACHE`` (then their cache is reused)."""
    if "ARC_FABRIC_CACHE" not in os.environ:
        os.environ["ARC_FABRIC_CACHE"] = str(tmp_path_factory.mktemp("arc_cache"))
