"""A real server on a free 127.0.0.1 port, in a background thread (tests, benchmarks).

with running_server(create_app(settings, plugins=plugins)) as base_url:
    httpx.get(f"{base_url}/api/health")
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def running_server(app: Any, timeout: float = 30.0) -> Iterator[str]:
    """Serve ``app`` with uvicorn until the block ends; yields ``http://127.0.0.1:PORT``."""
    import uvicorn

    port = free_port()
    from arc_fabric_core.server import UVICORN_OPTIONS

    config = uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="on", **UVICORN_OPTIONS)  # type: ignore[arg-type]
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="arc-test-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"the server did not start on port {port}")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout)
