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


@pytest.mark.parametrize("location", [b"http://[oops/x", b"http://127.0.0.1:99999/x", b"http://127.0.0.1:port/x"])
def test_a_redirect_to_an_unparseable_url_is_handed_back_and_the_others_still_arrive(location: bytes) -> None:
    def respond(path: str) -> bytes:
        if path == "/bad":
            return b"HTTP/1.1 302 Found\r\nLocation: " + location + b"\r\nContent-Length: 0\r\n\r\n"
        return ok(body_for(path))

    with raw_server(keep_serving(respond)) as base:
        gets = [Get(f"{base}/bad", 1000, "bad")] + [Get(f"{base}/f/{i}", 1000, i) for i in range(3)]
        done, failed = run(gets, width=1)
    assert set(failed) == {"bad"} and failed["bad"].status == 0
    assert done == {i: body_for(f"/f/{i}") for i in range(3)}

def test_an_unparseable_url_given_is_handed_back() -> None:
    done, failed = run([Get("http://127.0.0.1:99999/x", 10, "a"), Get("http://[::1/x", 10, "b")])
    assert done == {} and set(failed) == {"a", "b"}

def test_a_stale_retry_goes_to_a_fresh_connection_not_another_idle_one() -> None:
    """Two keep-alive connections answer one request each, then the server closes both (it said
    keep-alive). The third get meets a closed idle connection: its one retry must go to a new
    connection — not to the other idle one, which the server closed just the same."""
    answered = threading.Barrier(2)
    closing = threading.Event()

    def answer(conn: socket.socket, n: int) -> None:
        req = read_request(conn)
        if n >= 2:  # fresh connections: a normal keep-alive server
            while req:
                conn.sendall(ok(body_for(path_of(req))))
                req = read_request(conn)
            return
        answered.wait(2)  # both first requests are in: answer both at once
        conn.sendall(ok(body_for(path_of(req))))
        closing.wait(0.3)  # then close (the third get is on one of these by then)

    with raw_server(answer) as base:
        gets = [Get(f"{base}/f/{i}", 1000, i) for i in range(3)]
        done, failed = run(gets, width=2)
    assert failed == {} and done == {i: body_for(f"/f/{i}") for i in range(3)}

def test_a_name_whose_first_address_refuses_is_reached_on_the_next(monkeypatch: pytest.MonkeyPatch) -> None:
    """``localhost`` may resolve to ::1 first while the server listens on 127.0.0.1 only: the
    other addresses are tried, as ``socket.create_connection`` (the threaded path) does."""
    with raw_server(keep_serving(lambda p: ok(body_for(p)))) as base:
        port = int(base.rsplit(":", 1)[1])
        real = socket.getaddrinfo

        def two_addresses(host: str, *a: object, **kw: object) -> list:
            if host == "twohomes.test":
                return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.2", port)),  # nobody listens
                        (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]
            return real(host, *a, **kw)  # type: ignore[arg-type]

        monkeypatch.setattr(socket, "getaddrinfo", two_addresses)
        done, failed = run([Get(f"http://twohomes.test:{port}/f/{i}", 1000, i) for i in range(5)], width=2)
    assert failed == {} and done == {i: body_for(f"/f/{i}") for i in range(5)}

def test_differing_duplicate_content_lengths_are_refused() -> None:
    def respond(path: str) -> bytes:
        body = body_for(path, 20)
        return b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\nContent-Length: 20\r\n\r\n" + body

    with raw_server(keep_serving(respond)) as base:
        done, failed = run([Get(f"{base}/f", 20, "f")])
    assert done == {} and failed["f"].status == 0

@pytest.mark.parametrize("cdn", ["http://127.0.0.1:99999", "http://[oops"])
def test_a_download_redirected_to_an_unparseable_url_fails_as_a_protocol_error(tmp_path, cdn: str) -> None:  # noqa: ANN001
    """End to end: the loop hands the get back, and the threaded path refuses the Location with a
    ``ProtocolError`` (the user's error type), not a ``ValueError`` from ``urlsplit``."""
    from helpers.fault_server import Repo, fault_server

    from modelcache.errors import ProtocolError
    from modelcache.service.model_cache import ModelCache
    from modelcache.settings import Settings
    from modelcache.tokens import TokenSource

    repo = Repo("org/badloc", {"a.safetensors": os.urandom(2000), "b.txt": os.urandom(100)})
    with fault_server(repo, nodelay=True) as srv:
        srv.redirect_to = cdn
        mc = ModelCache(Settings(cache_dir=tmp_path / "cache", endpoint=srv.url, token=TokenSource(),
                                 retries=0, small_file_bytes=64 * 1024))
        with pytest.raises(ProtocolError, match="redirect"):
            mc.download(repo.repo_id)

def test_differing_duplicate_content_lengths_are_refused_by_the_threaded_path_too() -> None:
    import httpx

    from modelcache.hub.rawhttp import RawPool

    def respond(path: str) -> bytes:
        return b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\nContent-Length: 20\r\n\r\n" + body_for(path, 20)

    with raw_server(keep_serving(respond)) as base:
        pool = RawPool(timeout=2.0)
        with pytest.raises(httpx.RemoteProtocolError, match="Content-Length"):
            pool.get(f"{base}/f", {})
        pool.close()

def test_an_ipv6_literal_is_sent_in_brackets_in_the_host_header() -> None:
    """``Host: ::1:8080`` is not a valid header (RFC 9110 7.2): a strict server answers 400."""
    hosts: list[str] = []


    def answer(conn: socket.socket, _n: int) -> None:
        while req := read_request(conn):
            host = next(line.split(b":", 1)[1].strip().decode() for line in req.split(b"\r\n")
                        if line.lower().startswith(b"host:"))
            hosts.append(host)
            want = f"[::1]:{conn.getsockname()[1]}"
            conn.sendall(ok(body_for(path_of(req))) if host == want else
                         b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")

    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback")
    with raw_server(answer, host="::1", family=socket.AF_INET6) as base:
        done, failed = run([Get(f"{base}/f/{i}", 1000, i) for i in range(2)])
    assert failed == {} and done == {i: body_for(f"/f/{i}") for i in range(2)}
    assert hosts and all(h.startswith("[::1]:") for h in hosts)

def test_an_idle_connection_the_server_spoke_on_is_not_reused() -> None:
    """An idle keep-alive connection that received bytes nobody asked for (a server's ``408
    Request Timeout`` before it closes an idle connection, as Apache does) is closed, not read as
    the answer to the next request: that 408 would be judged as the file's own error status."""
    def a_answer(conn: socket.socket, n: int) -> None:
        while req := read_request(conn):
            path = path_of(req)
            if path == "/start":
                conn.sendall(b"HTTP/1.1 302 Found\r\nLocation: " + b_base[0].encode() + b"/slow\r\nContent-Length: 0\r\n\r\n")
                time.sleep(0.02)
                conn.sendall(b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
                return
            conn.sendall(ok(body_for(path)))

    def b_answer(conn: socket.socket, _n: int) -> None:
        while read_request(conn):
            time.sleep(0.2)  # (by now the 408 is on the idle connection to A)
            conn.sendall(b"HTTP/1.1 302 Found\r\nLocation: " + a_base.encode() + b"/final\r\nContent-Length: 0\r\n\r\n")

    b_base: list[str] = []
    with raw_server(a_answer) as a_base, raw_server(b_answer) as b:
        b_base.append(b)
        done, failed = run([Get(f"{a_base}/start", 1000, "f")], width=2)
    assert failed == {} and done == {"f": body_for("/final")}


# -- TLS ---------------------------------------------------------------------------------------------

@contextmanager
def tls_server(answer: Callable[[socket.socket, int], None]) -> Iterator[tuple[str, ssl.SSLContext, list[int]]]:
    """``raw_server`` behind TLS (a trustme CA): the base URL, a client context trusting it, and
    a list that counts the handshakes done."""
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("127.0.0.1").configure_cert(server_ctx)
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    handshakes: list[int] = []

    def wrapped(conn: socket.socket, n: int) -> None:
        with server_ctx.wrap_socket(conn, server_side=True) as tconn:
            handshakes.append(n)
            answer(tconn, n)

    with raw_server(wrapped) as base:
        yield base.replace("http://", "https://"), client_ctx, handshakes

def test_tls_keep_alive_connections_are_reused() -> None:
    with tls_server(keep_serving(lambda p: ok(body_for(p, 5000)))) as (base, ctx, handshakes):
        done, failed = run([Get(f"{base}/f/{i}", 5000, i) for i in range(20)], width=2, tls=lambda: ctx)
    assert failed == {} and done == {i: body_for(f"/f/{i}", 5000) for i in range(20)}
    assert 1 <= len(handshakes) <= 2
