"""A client that asks for a big file and then never reads it (a "slow read" attack) cannot hold a
connection (an fd, an open blob, a slot under the connection cap) for ever: once the server
cannot write to it for ``write_stall_timeout`` seconds, the connection is dropped."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from helpers.uvicorn_thread import uvicorn_in_thread

from modelcache.cache.importer import import_folder
from modelcache.cache.layout import RepoLayout


@contextmanager
def _guarded(cache: Path, protocol: str, stall: float) -> Iterator[tuple[int, object]]:
    from modelcache.server._limits import GuardedH11Protocol, HeadGuard, uvicorn_limits

    old = HeadGuard.write_stall_timeout
    HeadGuard.write_stall_timeout = stall
    limits = uvicorn_limits(keep_alive=1.0)
    if protocol == "h11":
        limits["http"] = GuardedH11Protocol
    try:
        with uvicorn_in_thread(cache, limits) as (port, server, _thread):
            yield port, server
    finally:
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


def test_pipelined_requests_never_read_are_not_answered_into_memory(tmp_path: Path) -> None:
    """Thousands of pipelined requests for a remembered file, answers never read: the server
    stops answering (and reading) once the socket's buffers and the transport's high-water mark
    are full, instead of queueing every answer in memory."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "config.json").write_text('{"pad": "' + "x" * 4000 + '"}')
    cache = tmp_path / "cache"
    import_folder(RepoLayout(cache, "model", "org/small"), src)
    path = "/org/small/resolve/main/config.json"
    with _guarded(cache, "default", stall=30) as (port, server):
        assert httpx.get(f"http://127.0.0.1:{port}{path}", trust_env=False).status_code == 200  # remembered
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.connect(("127.0.0.1", port))
        s.setblocking(False)
        request = f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
        sent, burst = 0, request * 4000  # ~16 MB of answers asked for
        deadline = time.monotonic() + 5
        while sent < len(burst) and time.monotonic() < deadline:
            try:  # in pieces under the 64 KiB request-head cap
                sent += s.send(burst[sent:sent + 16 * len(request)])
                time.sleep(0.001)
            except BlockingIOError:
                time.sleep(0.01)  # the server stopped reading: good
        time.sleep(0.5)
        state = server.server_state  # type: ignore[attr-defined]
        assert state.connections, "the connection was dropped: nothing tested"
        buffered = max(p.transport.get_write_buffer_size() for p in state.connections)
        assert buffered < 1 << 20, f"{buffered} bytes of answers queued for a client that reads nothing"
        s.close()
        assert httpx.get(f"http://127.0.0.1:{port}/healthz", trust_env=False, timeout=5).status_code == 200


def test_many_clients_that_never_read_hold_no_thread_from_a_reader(tmp_path: Path) -> None:
    """60 connections (more than the 40 worker threads) ask for a big file and never read it; a
    sending thread waits at most ``DRAIN_WAIT_MS`` for a full socket before handing it back to
    the event loop, so a client that does read still gets the whole file, at once."""
    data = os.urandom(1 << 20) * 8
    src = tmp_path / "src"
    src.mkdir()
    (src / "config.json").write_text("{}")
    (src / "model.safetensors").write_bytes(data)
    cache = tmp_path / "cache"
    record = import_folder(RepoLayout(cache, "model", "org/big"), src)
    path = f"/org/big/resolve/{record.commit}/model.safetensors"
    with _guarded(cache, "default", stall=30.0) as (port, _server):
        idle = []
        for _ in range(60):
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            s.connect(("127.0.0.1", port))
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            idle.append(s)
        try:
            time.sleep(0.5)  # every one of them is answered, and stuck
            t0 = time.monotonic()
            resp = httpx.get(f"http://127.0.0.1:{port}{path}", trust_env=False, timeout=20)
            took = time.monotonic() - t0
            assert resp.status_code == 200 and resp.content == data
            assert took < 10, f"a reading client waited {took:.1f} s behind 60 that never read"
        finally:
            for s in idle:
                s.close()
