"""``serve``'s uvicorn setup in a background thread, for tests that need the server object itself
(its shutdown, its protocol settings); ``live_server`` is enough for the others."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

__all__ = ["uvicorn_in_thread"]


@contextmanager
def uvicorn_in_thread(cache: Path, limits: dict[str, Any] | None = None,
                      log_level: str = "error") -> Iterator[tuple[int, Any, threading.Thread]]:
    """``create_app(cache)`` under uvicorn with ``limits`` (default ``uvicorn_limits()``) on a free
    loopback port; yields (port, server, thread) once ``/healthz`` answers; stopped on exit."""
    import uvicorn

    from modelcache.server import create_app
    from modelcache.server._limits import uvicorn_limits

    config = dict(uvicorn_limits() if limits is None else limits)
    config.pop("backlog", None)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(cache), log_level=log_level, lifespan="off", **config))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                httpx.get(f"http://127.0.0.1:{port}/healthz", trust_env=False, timeout=1)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline
                time.sleep(0.02)
        yield port, server, thread
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
