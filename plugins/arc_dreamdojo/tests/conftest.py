from __future__ import annotations

from arc_fabric_core.testing.fixtures import _tiny_cache  # noqa: F401 (one tiny cache per run)
