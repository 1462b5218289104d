"""Run the endpoint in a background thread on a free loopback port (demo, tests, embedding)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

__all__ = ["running_server"]


@contextmanager
def running_server(cache_dir: Path, host: str = "127.0.0.1", **create_app_kw: Any) -> Iterator[str]:
    """Serve ``cache_dir``; yield the base URL once ``/healthz`` answers; stop on exit."""
    import uvicorn

    from .app import create_app

    # proto=IPPROTO_TCP matters: asyncio only sets TCP_NODELAY on accepted sockets whose proto says
    # TCP, and without it every response with a body waits ~40 ms for a delayed ACK.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))
    sock.listen(128)
    port = sock.getsockname()[1]
    from ._limits import uvicorn_limits

    # the protocol `serve` runs (httptools, guarded, hot answers), so what is tested is what is served
    config = uvicorn.Config(create_app(Path(cache_dir), **create_app_kw), log_level="warning", lifespan="off",
                            **uvicorn_limits())  # type: ignore[arg-type]
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True, name=f"mc-serve-{port}")
    thread.start()
    url = f"http://{host}:{port}"
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                if httpx.get(f"{url}/healthz", timeout=1, trust_env=False).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the server on port {port} did not start")
            time.sleep(0.02)
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
