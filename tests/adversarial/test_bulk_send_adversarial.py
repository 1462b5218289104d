"""Zero-copy bodies sent in bulk (``_blob._BulkSocket``: corked, reading paused, one blocking
``sendfile`` per worker-thread hop), attacked: a send cancelled while its thread is in the middle
of a hop (uvicorn's shutdown cancels the request's task), requests pipelined behind a long body,
a client that sends more during a body whose answer closes the connection, and clients that read
steadily but slowly, as many as there are worker threads."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
import threading
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import uvloop
from helpers.bulk_socket import KeepTransport, socket_state
from helpers.uvicorn_thread import uvicorn_in_thread

from modelcache.cache.importer import import_folder
from modelcache.cache.layout import RepoLayout
from modelcache.server._blob import sendfile_body
from modelcache.server._limits import HeadGuard

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="TCP_CORK and SO_SNDTIMEO are Linux's")
MiB = 1 << 20


def _threads_sending() -> list[str]:
    """Threads now inside one of ``_blob``'s sendfile hops."""
    found = []
    for ident, frame in sys._current_frames().items():
        names = {f.name for f in traceback.extract_stack(frame)}
        if names & {"_sendfile_blocking", "_sendfile_some"}:
            found.append(str(ident))
    return found


class _Reader:
    """A client that reads steadily (about 100 MB/s at most, or ``rate`` bytes a second) while
    ``reading`` is set, then stops reading and keeps the connection open."""

    def __init__(self, port: int, rate: float | None = None) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.rate = rate
        self.reading = threading.Event()
        self.reading.set()
        self.closed = threading.Event()
        self.ended = threading.Event()  # the server closed the connection (or it broke)
        self.got = 0
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        start = time.monotonic()
        while not self.closed.is_set():
            if not self.reading.is_set():
                time.sleep(0.01)
                continue
            try:
                chunk = self.sock.recv(64 * 1024)
            except OSError:
                break
            if not chunk:
                break
            self.got += len(chunk)
            if self.rate is None:
                time.sleep(0.0005)
            else:
                time.sleep(max(0.0, self.got / self.rate - (time.monotonic() - start)))
        self.ended.set()

    def close(self) -> None:
        self.closed.set()
        try:
            self.sock.shutdown(socket.SHUT_RDWR)  # (wakes a recv in progress)
        except OSError:
            pass
        self.sock.close()
        self.thread.join(10)


@linux_only
@pytest.mark.parametrize("loop_kind", ["asyncio", "uvloop"])
def test_a_send_cancelled_mid_hop_leaves_no_thread_sending(tmp_path: Path, loop_kind: str) -> None:
    """The request's task is cancelled (as uvicorn's shutdown does, past its grace period) while a
    worker thread is in the middle of a blocking ``sendfile``; the client reads a little more,
    then stops reading. The thread must still end (its wait for room bounded) and the socket be
    put back: not left blocking, with no send timeout, inside a sendfile no one waits for."""
    blob = tmp_path / "blob"
    with open(blob, "wb") as fh:
        fh.truncate(96 * MiB)  # (sparse: zeros from the page cache)
    outcome: dict[str, object] = {}

    async def main() -> None:
        loop = asyncio.get_running_loop()
        protos: list[KeepTransport] = []
        server = await loop.create_server(lambda: protos.append(KeepTransport()) or protos[-1], "127.0.0.1", 0)
        client = _Reader(server.sockets[0].getsockname()[1])
        client.thread.start()
        while not protos:
            await asyncio.sleep(0.01)
        await protos[0].ready
        transport = protos[0].transport
        assert transport is not None
        sock = transport.get_extra_info("socket")
        before = socket_state(sock)
        fd = os.open(blob, os.O_RDONLY)
        try:
            task = loop.create_task(sendfile_body(transport, fd, 0, 96 * MiB, stall_timeout=10))
            deadline = time.monotonic() + 10
            while socket_state(sock)[0]:  # until a thread is inside its blocking sendfile
                assert time.monotonic() < deadline, "the body never went out in a blocking hop"
                await asyncio.sleep(0)
            task.cancel()
            await asyncio.sleep(0.2)  # the client goes on reading a while...
            client.reading.clear()  # ...then reads no more
            done, _ = await asyncio.wait({task}, timeout=10)
            outcome["task ended"] = bool(done) and task.cancelled()
            deadline = time.monotonic() + 3
            while (socket_state(sock) != before or _threads_sending()) and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            outcome["socket"], outcome["before"] = socket_state(sock), before
            outcome["sending"] = _threads_sending()
        finally:
            client.close()  # (lets a thread stuck in sendfile out: EPIPE)
            await asyncio.sleep(0.1)
            os.close(fd)
            transport.close()
            server.close()

    if loop_kind == "uvloop":
        uvloop.run(main())
    else:
        asyncio.run(main())
    assert outcome["task ended"] is True
    assert outcome["sending"] == [], "a worker thread is still in a sendfile for a send that was cancelled"
    assert outcome["socket"] == outcome["before"]  # non-blocking again, uncorked, no send timeout


@contextmanager
def _server(cache: Path, grace: float = 5.0) -> Iterator[tuple[int, object, threading.Thread]]:
    """``serve``'s uvicorn setup (``uvicorn_limits``) in a thread, with ``grace`` seconds of
    graceful shutdown."""
    from modelcache.server._limits import uvicorn_limits

    with uvicorn_in_thread(cache, {**uvicorn_limits(), "timeout_graceful_shutdown": grace},
                           log_level="critical") as running:
        yield running


def _big(tmp_path: Path, size: int, name: str = "org/big") -> tuple[Path, str, bytes]:
    src = tmp_path / "src"
    src.mkdir()
    (src / "config.json").write_text("{}")
    data = os.urandom(MiB) * (size // MiB)
    (src / "model.safetensors").write_bytes(data)
    cache = tmp_path / "cache"
    record = import_folder(RepoLayout(cache, "model", name), src)
    return cache, f"/{name}/resolve/{record.commit}/model.safetensors", data


@linux_only
def test_a_server_stopped_mid_body_leaves_no_thread_sending(tmp_path: Path) -> None:
    """``serve`` stops (Ctrl-C, SIGTERM, should_exit) while a client is reading a big file; past
    the grace period uvicorn cancels the request. The client then stops reading but keeps its
    connection: no worker thread may be left in a sendfile for it (a non-daemon thread: the
    process could not exit)."""
    cache, path, _data = _big(tmp_path, 160 * MiB)
    with _server(cache, grace=0.3) as (port, server, thread):
        client = _Reader(port)
        client.sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        client.thread.start()
        try:
            deadline = time.monotonic() + 10
            while client.got < 4 * MiB:
                assert time.monotonic() < deadline
                time.sleep(0.01)
            server.should_exit = True  # type: ignore[attr-defined]
            thread.join(20)  # the client reads on until the server is down
            assert not thread.is_alive()
            client.reading.clear()
            deadline = time.monotonic() + 3
            while _threads_sending() and time.monotonic() < deadline:
                time.sleep(0.05)
            assert _threads_sending() == [], "a sendfile goes on for a request the server dropped"
        finally:
            client.close()


def test_a_pipelined_request_answered_after_a_long_body_is_not_cut(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Two requests for a big file in one write (HTTP/1.1 pipelining), read at a few MB/s: the
    second is answered once the first is done, and its body must not be cut by the request-head
    deadline re-armed when the first answer completed (its head had long arrived)."""
    monkeypatch.setattr(HeadGuard, "header_timeout", 0.5)  # each body below takes about a second to read
    cache, path, data = _big(tmp_path, 6 * MiB)
    with _server(cache) as (port, _server_, _thread):
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode() * 2)
            buf = b""
            while buf.count(data) < 2:
                chunk = sock.recv(64 * 1024)
                if not chunk:
                    break
                buf += chunk
                time.sleep(0.01)
    first, _, rest = buf.partition(b"\r\n\r\n")
    assert first.startswith(b"HTTP/1.1 200") and rest[: len(data)] == data
    second, _, body = rest[len(data):].partition(b"\r\n\r\n")
    assert second.startswith(b"HTTP/1.1 200")
    assert len(body) == len(data), f"the second answer was cut at {len(body)} of {len(data)} bytes"
    assert body == data


@pytest.mark.parametrize("how", ["connection-close", "http/1.0", "server-stopping"])
def test_an_answer_that_closes_the_connection_is_whole_though_the_client_sent_more(tmp_path: Path, how: str) -> None:
    """The client sends more (its next request) while a big body is sent, and the answer is the
    connection's last (``Connection: close``, HTTP/1.0, or ``serve`` stopping, which ends kept-alive
    connections after their answer). What was sent during the body must not be left unread when the
    connection is closed: the kernel would reset it, dropping the end of the body on its way."""
    cache, path, data = _big(tmp_path, 16 * MiB)
    head = {"connection-close": f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            "http/1.0": f"GET {path} HTTP/1.0\r\n\r\n",
            "server-stopping": f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n"}[how]
    with _server(cache) as (port, server, _thread):
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)  # the body takes a while
            sock.sendall(head.encode())
            buf, spoke = b"", False
            while True:
                try:
                    chunk = sock.recv(64 * 1024)
                except ConnectionResetError:
                    break
                if not chunk:
                    break
                buf += chunk
                if not spoke and len(buf) > MiB:
                    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                    spoke = True
                    if how == "server-stopping":
                        server.should_exit = True  # type: ignore[attr-defined]
                time.sleep(0.002)
    status, _, body = buf.partition(b"\r\n\r\n")
    assert status.startswith(b"HTTP/1.1 200")
    assert len(body) == len(data), f"the body was cut at {len(body)} of {len(data)} bytes"
    assert body == data


def _set_worker_threads(server: object, port: int, n: int) -> None:
    """Lower the server's worker-thread limit (anyio's default limiter, 40) to ``n``, on its loop."""
    import anyio

    idle = socket.create_connection(("127.0.0.1", port))  # a connection: the protocol knows the loop
    try:
        deadline = time.monotonic() + 10
        while not server.server_state.connections:  # type: ignore[attr-defined]
            assert time.monotonic() < deadline
            time.sleep(0.01)
        loop = next(iter(server.server_state.connections)).loop  # type: ignore[attr-defined]

        async def lower() -> None:
            anyio.to_thread.current_default_thread_limiter().total_tokens = n

        asyncio.run_coroutine_threadsafe(lower(), loop).result(10)
    finally:
        idle.close()


@linux_only
def test_steady_slow_readers_do_not_hold_every_worker_thread(tmp_path: Path) -> None:
    """As many clients as the server has worker threads (2 here, 40 by default) read a big file
    steadily at a modest pace, as clients behind a shared link do. A blocking ``sendfile`` goes on
    as long as each of its waits sees some room freed: every hop held its thread until the whole
    body was queued in the socket, and a request that needs a worker thread (any blob not
    answered from memory) waited for that. It must be answered while the two are still in the
    first half of their bodies."""
    cache, path, data = _big(tmp_path, 32 * MiB)
    with _server(cache) as (port, server, _thread):
        _set_worker_threads(server, port, 2)
        readers = [_Reader(port, rate=16 * MiB) for _ in range(2)]
        try:
            for r in readers:
                r.sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
                r.thread.start()
            deadline = time.monotonic() + 10
            while min(r.got for r in readers) < 2 * MiB:
                assert time.monotonic() < deadline
                time.sleep(0.01)
            other = httpx.get(f"http://127.0.0.1:{port}{path}", headers={"Range": "bytes=0-99"}, trust_env=False,
                              timeout=30)  # (a Range is never a hot answer: it opens the blob in a worker thread)
            progress = [r.got for r in readers]
            assert other.status_code == 206 and other.content == data[:100]
            assert max(progress) < len(data) // 2, (
                f"a request waited for a worker thread until slow readers' bodies were queued ({progress} bytes read)")
            for r in readers:
                assert r.ended.wait(30)
                assert r.got > len(data)  # (each got its whole body and head, then the close)
        finally:
            for r in readers:
                r.close()
