"""A real uvicorn server on 127.0.0.1 in a background thread, and the bundled demo model.

    with live_server(cache_dir) as url:      # "http://127.0.0.1:PORT", /healthz already answers
        snapshot_download(repo, endpoint=url, cache_dir=tmp, token=False)
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import uvicorn

import modelcache
from modelcache.cache.importer import import_folder
from modelcache.cache.layout import RepoLayout
from modelcache.cache.records import TreeRecord

__all__ = ["DEMO_MODEL", "DEMO_REPO", "import_demo", "live_server"]

DEMO_MODEL = Path(modelcache.__file__).parent / "_demo_model"
DEMO_REPO = "modelcache/tiny-llama"


def import_demo(
    cache_dir: Path, repo_id: str = DEMO_REPO, revision: str = "main", repo_type: str = "model"
) -> TreeRecord:
    """Publish the bundled tiny model into ``cache_dir`` as ``repo_id@revision``."""
    return import_folder(RepoLayout(Path(cache_dir), repo_type, repo_id), DEMO_MODEL, revision=revision)


@contextmanager
def live_server(cache_dir: Path, **create_app_kw: Any) -> Iterator[str]:
    """Serve ``cache_dir`` with ``modelcache.server.create_app`` on a free loopback port."""
    from modelcache.server import create_app

    # proto=IPPROTO_TCP matters: asyncio only sets TCP_NODELAY on accepted sockets whose proto says
    # TCP, and without it every response with a body waits ~40 ms for a delayed ACK.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    port = sock.getsockname()[1]
    config = uvicorn.Config(create_app(Path(cache_dir), **create_app_kw), log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True, name=f"live-server-{port}")
    thread.start()
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                if httpx.get(f"{url}/healthz", timeout=1, trust_env=False).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the test server on port {port} did not start")
            time.sleep(0.02)
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
