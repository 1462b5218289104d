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


def test_a_head_split_into_one_byte_segments_is_read_whole() -> None:
    def answer(conn: socket.socket, _n: int) -> None:
        while req := read_request(conn):
            for b in ok(body_for(path_of(req), 300)):
                conn.send(bytes([b]))

    with raw_server(answer) as base:
        done, failed = run([Get(f"{base}/f/{i}", 300, i) for i in range(3)], width=1)
    assert failed == {} and done == {i: body_for(f"/f/{i}", 300) for i in range(3)}


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


def test_a_tls_server_that_stalls_in_the_handshake_times_out_and_leaks_nothing() -> None:
    def silent(conn: socket.socket, _n: int) -> None:
        conn.recv(4096)  # the ClientHello, never answered
        time.sleep(1.0)

    ctx = ssl.create_default_context()
    before = open_fds()
    with raw_server(silent) as base:
        t0 = time.monotonic()
        done, failed = run([Get(f"{base.replace('http:', 'https:')}/f/{i}", 10, i) for i in range(3)],
                           timeout=0.3, tls=lambda: ctx)
        assert time.monotonic() - t0 < 0.9
    assert open_fds() == before  # (the server's ends closed too: counted after it stopped)
    assert done == {} and set(failed) == {0, 1, 2} and all("no progress" in f.why for f in failed.values())


def test_a_tls_close_notify_mid_body_is_handed_back() -> None:
    def answer(conn: socket.socket, _n: int) -> None:
        if read_request(conn):
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n" + b"x" * 1000)
            conn.unwrap()  # close_notify, then TCP close

    with tls_server(answer) as (base, ctx, _):
        done, failed = run([Get(f"{base}/f", 5000, "f")], tls=lambda: ctx)
    assert done == {} and failed["f"].status == 0


# -- redirects and the token -------------------------------------------------------------------------

@pytest.mark.parametrize("form", ["absolute", "protocol-relative", "uppercase-scheme", "userinfo", "userinfo-spoof"])
def test_the_token_never_follows_a_redirect_to_another_origin(form: str) -> None:
    """The endpoint redirects to a CDN (another port), the CDN back to the endpoint: ``headers``
    is asked per hop, so the token is sent to the endpoint only, in every spelling of the URL."""
    from modelcache.hub.client import origin_of

    seen: dict[str, list[bytes]] = {"endpoint": [], "cdn": []}

    def auth_of(req: bytes) -> bytes:
        return b"".join(line for line in req.split(b"\r\n") if line.lower().startswith(b"authorization"))

    def endpoint(conn: socket.socket, _n: int) -> None:
        while req := read_request(conn):
            seen["endpoint"].append(auth_of(req))
            if path_of(req) == "/start":
                host = cdn_base[0].split("//", 1)[1]
                loc = {"absolute": f"http://{host}/hop", "protocol-relative": f"//{host}/hop",
                       "uppercase-scheme": f"HTTP://{host}/hop", "userinfo": f"http://user:pw@{host}/hop",
                       "userinfo-spoof": f"http://{ep_host[0]}@{host}/hop"}[form]
                conn.sendall(b"HTTP/1.1 302 Found\r\nLocation: " + loc.encode() + b"\r\nContent-Length: 3\r\n\r\nabc")
            else:
                conn.sendall(ok(body_for("/final")))

    def cdn(conn: socket.socket, _n: int) -> None:
        while req := read_request(conn):
            seen["cdn"].append(auth_of(req))
            conn.sendall(b"HTTP/1.1 307 Temporary\r\nLocation: " + ep_url[0].encode() + b"/final\r\nContent-Length: 0\r\n\r\n")

    cdn_base: list[str] = []
    ep_host: list[str] = []
    ep_url: list[str] = []
    with raw_server(endpoint) as ep, raw_server(cdn) as c:
        cdn_base.append(c)
        ep_url.append(ep)
        ep_host.append(ep.split("//", 1)[1])

        def headers(u: str) -> dict[str, str]:
            return {"Authorization": "Bearer hf_secret"} if origin_of(u) == origin_of(ep) else {}

        done, failed = run([Get(f"{ep}/start", 1000, "f")], width=1, headers=headers)
    assert failed == {} and done == {"f": body_for("/final")}
    assert seen["cdn"] == [b""]
    assert seen["endpoint"] == [b"Authorization: Bearer hf_secret"] * 2


def test_width_one_with_several_origins_and_redirects_between_them_loses_no_get() -> None:
    def origin(tag: bytes) -> Callable[[socket.socket, int], None]:
        def answer(conn: socket.socket, _n: int) -> None:
            while req := read_request(conn):
                path = path_of(req)
                if path.startswith("/r/"):  # redirect to the next origin
                    _, _, i, hop = path.split("/")
                    nxt = bases[(bases.index(me[0]) + 1) % 3]
                    target = f"{nxt}/f/{i}" if int(hop) >= 2 else f"{nxt}/r/{i}/{int(hop) + 1}"
                    conn.sendall(b"HTTP/1.1 302 Found\r\nLocation: " + target.encode() + b"\r\nContent-Length: 7\r\n\r\nmoved.\n")
                else:
                    conn.sendall(ok(body_for(path)))
        me: list[str] = []
        answer.me = me  # type: ignore[attr-defined]
        return answer

    answers = [origin(b"a"), origin(b"b"), origin(b"c")]
    with raw_server(answers[0]) as a, raw_server(answers[1]) as b, raw_server(answers[2]) as c:
        bases = [a, b, c]
        for ans, base in zip(answers, bases):
            ans.me.append(base)  # type: ignore[attr-defined]
        gets = [Get(f"{bases[i % 3]}/r/{i}/0" if i % 2 else f"{bases[i % 3]}/f/{i}", 1000, i) for i in range(12)]
        done, failed = run(gets, width=1)
    assert failed == {} and done == {i: body_for(f"/f/{i}") for i in range(12)}


@pytest.mark.parametrize("redirect_body", [b"", b"x", b"y" * 1001, b"z" * 70_000])
def test_a_redirect_body_of_any_length_is_skipped(redirect_body: bytes) -> None:
    def respond(path: str) -> bytes:
        if path == "/r":
            return (b"HTTP/1.1 301 Moved\r\nLocation: /f\r\nContent-Length: %d\r\n\r\n" % len(redirect_body)
                    + redirect_body)
        return ok(body_for(path))

    with raw_server(keep_serving(respond)) as base:
        done, failed = run([Get(f"{base}/r", 1000, i) for i in range(3)], width=1)
    assert failed == {} and done == {i: body_for("/f") for i in range(3)}


# -- statuses and framing ----------------------------------------------------------------------------

@pytest.mark.parametrize("status", [204, 304, 401, 404, 429, 503])
def test_a_non_200_status_is_handed_back_with_it_once(status: int) -> None:
    asked: list[str] = []

    def respond(path: str) -> bytes:
        asked.append(path)
        if path == "/bad":
            return b"HTTP/1.1 %d Nope\r\nRetry-After: 3\r\nContent-Length: 0\r\n\r\n" % status
        return ok(body_for(path))

    with raw_server(keep_serving(respond)) as base:
        done, failed = run([Get(f"{base}/bad", 1000, "bad"), Get(f"{base}/ok", 1000, "ok")], width=1)
    assert done == {"ok": body_for("/ok")} and failed["bad"].status == status
    assert failed["bad"].headers["retry-after"] == "3" and asked.count("/bad") == 1


@pytest.mark.parametrize("head", [b"HTTP/1.0 200 OK\r\nContent-Length: 1000\r\n\r\n",
                                  b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1000\r\n\r\n"])
def test_a_connection_the_server_will_close_is_not_reused(head: bytes) -> None:
    def answer(conn: socket.socket, _n: int) -> None:
        if req := read_request(conn):
            conn.sendall(head + body_for(path_of(req)))  # then closes; a second request would hang

    with raw_server(answer) as base:
        done, failed = run([Get(f"{base}/f/{i}", 1000, i) for i in range(5)], width=1, timeout=1.0)
    assert failed == {} and done == {i: body_for(f"/f/{i}") for i in range(5)}


def test_a_server_that_resets_mid_body_is_handed_back() -> None:
    def answer(conn: socket.socket, _n: int) -> None:
        if read_request(conn):
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + b"x" * 100)
            time.sleep(0.05)
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")  # RST

    with raw_server(answer) as base:
        done, failed = run([Get(f"{base}/f", 1000, "f")])
    assert done == {} and failed["f"].status == 0


def test_a_server_that_never_answers_times_out_every_get_even_at_width_one() -> None:
    def silent(conn: socket.socket, _n: int) -> None:
        read_request(conn)
        time.sleep(1.0)

    with raw_server(silent) as base:
        t0 = time.monotonic()
        done, failed = run([Get(f"{base}/f/{i}", 10, i) for i in range(3)], width=1, timeout=0.2)
    assert done == {} and set(failed) == {0, 1, 2}
    assert time.monotonic() - t0 < 1.5


# -- resources ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("raiser", ["done", "fallback"])
def test_a_callback_that_raises_ends_the_run_with_every_socket_closed(raiser: str) -> None:
    def respond(path: str) -> bytes:
        return ok(body_for(path)) if "/f/" in path else b"HTTP/1.1 500 No\r\nContent-Length: 0\r\n\r\n"

    class Boom(Exception):
        pass

    def boom(*_a: object) -> None:
        raise Boom

    before = open_fds()
    with raw_server(keep_serving(respond)) as base:
        gets = [Get(f"{base}/{'f' if raiser == 'done' else 'e'}/{i}", 1000, i) for i in range(8)]
        with pytest.raises(Boom):
            SmallGets(width=4, timeout=2.0, headers=lambda u: {}, tls=ssl.create_default_context).run(
                gets, done=boom if raiser == "done" else lambda g, b: None,
                fallback=boom if raiser == "fallback" else lambda g, f: None, stop=lambda: False)
    assert open_fds() == before  # (after the server stopped: a client end left open keeps its thread)


def test_a_content_length_far_above_the_size_is_never_allocated() -> None:
    import tracemalloc

    def respond(path: str) -> bytes:
        return b"HTTP/1.1 200 OK\r\nContent-Length: 200000000\r\n\r\n" + b"x" * 1000

    with raw_server(keep_serving(respond)) as base:
        tracemalloc.start()
        try:
            done, failed = run([Get(f"{base}/f", 1000, "f")])
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert done == {} and failed["f"].status == 0 and peak < 10_000_000


# -- the engine: what the loop hands back ------------------------------------------------------------

def _download(tmp_path, srv, repo, **kw: object):  # noqa: ANN001, ANN202
    from modelcache.service.model_cache import ModelCache
    from modelcache.settings import Settings
    from modelcache.tokens import TokenSource

    mc = ModelCache(Settings(cache_dir=tmp_path / "cache", endpoint=srv.url, token=TokenSource(), retry_base=0.01,
                             retry_cap=0.1, small_file_bytes=64 * 1024, **kw))  # type: ignore[arg-type]
    return mc, mc.download(repo.repo_id)


def _small_repo(repo_id: str) -> object:
    from helpers.fault_server import Repo

    return Repo(repo_id, {f"f{i:02d}.txt": os.urandom(3000 + i) for i in range(12)}, lfs=set())


def _asked(srv, path: str) -> int:  # noqa: ANN001
    return sum(1 for e in srv.log if e.method == "GET" and e.path.endswith("/" + path))


def _engine_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith(("mc-finish", "mc-conn", "mc-small"))]


@pytest.mark.parametrize(("status", "error"), [(401, "AuthError"), (403, "AuthError"), (404, "RepoNotFound")])
def test_a_refusal_from_the_loop_fails_the_download_with_its_error_asked_once(tmp_path, status: int,
                                                                            error: str) -> None:  # noqa: ANN001
    from helpers.fault_server import Faults, fault_server

    from modelcache import errors

    repo = _small_repo("org/refused")
    with fault_server(repo, nodelay=True) as srv:
        srv.faults["f05.txt"] = Faults(statuses=[status] * 5)
        with pytest.raises(getattr(errors, error)):
            _download(tmp_path, srv, repo)
        assert _asked(srv, "f05.txt") == 1
    assert _engine_threads() == []


def test_a_429_from_the_loop_waits_its_retry_after_then_the_file_arrives(tmp_path) -> None:  # noqa: ANN001
    from helpers.fault_server import Faults, fault_server

    repo = _small_repo("org/busy")
    with fault_server(repo, nodelay=True) as srv:
        srv.faults["f03.txt"] = Faults(statuses=[429], retry_after="1")
        t0 = time.monotonic()
        mc, result = _download(tmp_path, srv, repo)
        took = time.monotonic() - t0
        assert _asked(srv, "f03.txt") == 2
    assert 1.0 <= took < 4.0  # (the Retry-After, not retry_cap's 0.1 s)
    assert all((result.snapshot / p).read_bytes() == data for p, data in repo.files.items())
    assert _engine_threads() == []


@pytest.mark.parametrize("corrupt", [1, 2])
def test_a_corrupt_body_from_the_loop_is_fetched_again_once(tmp_path, corrupt: int) -> None:  # noqa: ANN001
    from helpers.fault_server import Faults, fault_server

    from modelcache.errors import IntegrityError

    repo = _small_repo("org/corrupt")
    with fault_server(repo, nodelay=True) as srv:
        srv.faults["f07.txt"] = Faults(corrupt=corrupt)
        if corrupt == 1:
            _mc, result = _download(tmp_path, srv, repo)
            assert (result.snapshot / "f07.txt").read_bytes() == repo.files["f07.txt"]
        else:
            with pytest.raises(IntegrityError):
                _download(tmp_path, srv, repo)
        assert _asked(srv, "f07.txt") == 2
    assert _engine_threads() == []
