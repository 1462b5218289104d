"""A client that asks for a big file and then never reads it (a "slow read" attack) cannot hold a
connection (an fd, an open blob, a slot under the connection cap) for ever: once the server
cannot write to it for ``write_stall_timeout`` seconds, the connection is dropped."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from modelcache.cache.importer import import_folder
from modelcache.cache.layout import RepoLayout


@contextmanager
def _guarded(cache: Path, protocol: str, stall: float) -> Iterator[tuple[int, object]]:
    import uvicorn

    from modelcache.server import create_app
    from modelcache.server._limits import GuardedH11Protocol, HeadGuard, uvicorn_limits

    old = HeadGuard.write_stall_timeout
    HeadGuard.write_stall_timeout = stall
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    port = sock.getsockname()[1]
    limits = uvicorn_limits(keep_alive=1.0)
    if protocol == "h11":
        limits["http"] = GuardedH11Protocol
    limits.pop("backlog")
    server = uvicorn.Server(uvicorn.Config(create_app(cache), log_level="error", lifespan="off", **limits))
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
        yield port, server
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
        HeadGuard.write_stall_timeout = old


@pytest.mark.parametrize("protocol", ["default", "h11"])
def test_a_client_that_never_reads_is_dropped(tmp_path: Path, protocol: str) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "config.json").write_text("{}")
    (src / "model.safetensors").write_bytes(os.urandom(1 << 20) * 24)  # far more than the socket buffers
    cache = tmp_path / "cache"
    record = import_folder(RepoLayout(cache, "model", "org/big"), src)
    with _guarded(cache, protocol, stall=0.5) as (port, server):
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.connect(("127.0.0.1", port))
        s.sendall(f"GET /org/big/resolve/{record.commit}/model.safetensors HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        state = server.server_state  # type: ignore[attr-defined]
        deadline = time.monotonic() + 15
        while not state.connections:  # the request arrives...
            assert time.monotonic() < deadline
            time.sleep(0.02)
        while state.connections:  # ...and, never read, its connection goes
            assert time.monotonic() < deadline, "a client that never reads holds its connection for ever"
            time.sleep(0.05)
        s.close()
        assert httpx.get(f"http://127.0.0.1:{port}/healthz", trust_env=False, timeout=5).status_code == 200
