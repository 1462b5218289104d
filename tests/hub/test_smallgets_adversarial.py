"""``smallgets`` against an adversary: upstreams that lie or misbehave, redirects meant to leak the
token or crash the loop, and resource exhaustion. Each test pins one behaviour; real servers on
127.0.0.1 only."""

from __future__ import annotations

import os
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest

from modelcache.hub.smallgets import Failed, Get, SmallGets


# -- helpers -----------------------------------------------------------------------------------------

def run(gets: list[Get], *, width: int = 4, timeout: float = 2.0,
        headers: Callable[[str], dict[str, str] | None] = lambda u: {},
        tls: Callable[[], ssl.SSLContext] = ssl.create_default_context,
        stop: Callable[[], bool] = lambda: False) -> tuple[dict[object, bytes], dict[object, Failed]]:
    """Run the gets; every get must be reported exactly once."""
    done: dict[object, bytes] = {}
    failed: dict[object, Failed] = {}

    def on_done(g: Get, body: bytearray) -> None:
        assert g.tag not in done and g.tag not in failed, f"{g.tag} reported twice"
        done[g.tag] = bytes(body)

    def on_fail(g: Get, f: Failed) -> None:
        assert g.tag not in done and g.tag not in failed, f"{g.tag} reported twice"
        failed[g.tag] = f

    SmallGets(width=width, timeout=timeout, headers=headers, tls=tls).run(gets, on_done, on_fail, stop)
    return done, failed


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@contextmanager
def raw_server(answer: Callable[[socket.socket, int], None], host: str = "127.0.0.1",
               family: int = socket.AF_INET) -> Iterator[str]:
    """Accept connections; ``answer(conn, n)`` handles the n-th one (from 0) in its own thread."""
    lsock = socket.socket(family)
    lsock.bind((host, 0))
    lsock.listen(64)
    lsock.settimeout(0.05)
    stop = threading.Event()
    threads: list[threading.Thread] = []

    def guarded(conn: socket.socket, n: int) -> None:
        with conn:
            try:
                answer(conn, n)
            except OSError:
                pass

    def loop() -> None:
        n = 0
        while not stop.is_set():
            try:
                conn, _ = lsock.accept()
            except OSError:
                continue
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            t = threading.Thread(target=guarded, args=(conn, n), daemon=True)
            threads.append(t)
            t.start()
            n += 1

    t = threading.Thread(target=loop, daemon=True)
    t.start()
    port = lsock.getsockname()[1]
    try:
        yield f"http://[{host}]:{port}" if family == socket.AF_INET6 else f"http://{host}:{port}"
    finally:
        stop.set()
        t.join()
        lsock.close()
        for th in threads:
            th.join(2.0)


def read_request(conn: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(4096)
        if not chunk:
            return b""
        data += chunk
    return data


def path_of(request: bytes) -> str:
    return request.split(b" ", 2)[1].decode()


def ok(body: bytes, extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n%s\r\n" % (len(body), extra) + body


def body_for(path: str, size: int = 1000) -> bytes:
    return (path.encode() * (size // max(1, len(path)) + 1))[:size]


def keep_serving(respond: Callable[[str], bytes]) -> Callable[[socket.socket, int], None]:
    """A keep-alive server: each request on the connection is answered ``respond(path)``."""
    def answer(conn: socket.socket, _n: int) -> None:
        while req := read_request(conn):
            conn.sendall(respond(path_of(req)))
    return answer


# -- probes ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("interim", [b"HTTP/1.1 100 Continue\r\n\r\n",
                                     b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n"])
def test_an_informational_1xx_answer_is_skipped_and_the_final_answer_read(interim: bytes) -> None:
    def respond(path: str) -> bytes:
        return interim + interim + ok(body_for(path))

    with raw_server(keep_serving(respond)) as base:
        done, failed = run([Get(f"{base}/f/{i}", 1000, i) for i in range(4)], width=2)
    assert failed == {} and done == {i: body_for(f"/f/{i}") for i in range(4)}
