"""``smallgets``: many small GETs from one thread over non-blocking keep-alive connections, against
real servers on loopback — the fault server, a TLS one, and raw sockets that misbehave."""

from __future__ import annotations

import os
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import ThreadingHTTPServer

import pytest
from helpers.fault_server import Faults, Repo, fault_server

from modelcache.hub.smallgets import Failed, Get, SmallGets


def files(n: int, size: int = 3000) -> dict[str, bytes]:
    return {f"f{i:03d}.txt": os.urandom(size + i) for i in range(n)}


def url(base: str, repo: Repo, path: str) -> str:
    return f"{base}/{repo.repo_id}/resolve/{repo.commit}/{path}"


def run(gets: list[Get], *, width: int = 4, timeout: float = 5.0,
        headers: Callable[[str], dict[str, str] | None] = lambda u: {},
        tls: Callable[[], ssl.SSLContext] = ssl.create_default_context,
        stop: Callable[[], bool] = lambda: False) -> tuple[dict[str, bytes], dict[str, Failed]]:
    done: dict[str, bytes] = {}
    failed: dict[str, Failed] = {}
    SmallGets(width=width, timeout=timeout, headers=headers, tls=tls).run(
        gets, done=lambda g, body: done.__setitem__(g.tag, bytes(body)),  # type: ignore[index]
        fallback=lambda g, f: failed.__setitem__(g.tag, f), stop=stop)  # type: ignore[index]
    return done, failed


def gets_for(base: str, repo: Repo, paths: list[str] | None = None) -> list[Get]:
    return [Get(url(base, repo, p), len(repo.files[p]), p) for p in (paths or sorted(repo.files))]


def test_many_files_arrive_whole_over_at_most_width_connections() -> None:
    repo = Repo("org/many", files(120), lfs=set())
    with fault_server(repo, nodelay=True) as srv:
        done, failed = run(gets_for(srv.url, repo), width=6)
    assert failed == {}
    assert done == repo.files
    assert 1 <= srv.connections <= 6  # keep-alive: connections were reused, never more than the width


def test_an_error_status_is_handed_back_with_its_headers_and_asked_once() -> None:
    repo = Repo("org/err", files(5), lfs=set())
    with fault_server(repo, nodelay=True) as srv:
        srv.faults["f002.txt"] = Faults(statuses=[403])
        srv.faults["f003.txt"] = Faults(statuses=[429], retry_after="7")
        done, failed = run(gets_for(srv.url, repo))
    assert set(done) == {"f000.txt", "f001.txt", "f004.txt"}
    assert failed["f002.txt"].status == 403
    assert failed["f003.txt"].status == 429 and failed["f003.txt"].headers["retry-after"] == "7"
    assert sum(1 for e in srv.log if e.path.endswith("f002.txt")) == 1


@pytest.mark.parametrize("fault", ["truncate", "extra_bytes"])
def test_a_short_or_long_body_is_handed_back_and_the_others_still_arrive(fault: str) -> None:
    repo = Repo("org/short", files(8), lfs=set())
    with fault_server(repo, nodelay=True) as srv:
        srv.faults["f004.txt"] = Faults(**{fault: 1})
        done, failed = run(gets_for(srv.url, repo), width=2)
    assert set(failed) == {"f004.txt"} and failed["f004.txt"].status == 0
    assert len(done) == 7 and all(done[p] == repo.files[p] for p in done)


def test_a_stalled_body_times_out_without_holding_up_the_rest() -> None:
    repo = Repo("org/stall", files(10, size=200_000), lfs=set())
    with fault_server(repo, nodelay=True, chunk=16 * 1024) as srv:
        srv.faults["f000.txt"] = Faults(stall=1, stall_seconds=3.0)
        t0 = time.monotonic()
        done, failed = run(gets_for(srv.url, repo), width=3, timeout=0.5)
        took = time.monotonic() - t0
    assert set(failed) == {"f000.txt"} and "no progress" in failed["f000.txt"].why
    assert len(done) == 9
    assert took < 2.5  # the stall ended the get after the timeout, not after the server's 3 s


def test_redirects_are_followed_and_the_token_goes_only_to_the_endpoint() -> None:
    data = {"small.safetensors": os.urandom(5000), "a.txt": os.urandom(100)}
    repo = Repo("org/redir", data)
    with fault_server(repo, nodelay=True) as cdn, fault_server(repo, nodelay=True) as srv:
        srv.redirect_to = cdn.url
        endpoint = srv.url

        def headers(u: str) -> dict[str, str]:
            return {"Authorization": "Bearer hf_secret"} if u.startswith(endpoint + "/") else {}

        done, failed = run(gets_for(srv.url, repo), headers=headers)
    assert failed == {} and done == data
    assert [e.authorization for e in cdn.log] and all(e.authorization is None for e in cdn.log)
    assert all(e.authorization == "Bearer hf_secret" for e in srv.log)


def test_a_url_the_caller_will_not_send_directly_is_handed_back() -> None:
    repo = Repo("org/proxied", files(2), lfs=set())
    with fault_server(repo, nodelay=True) as srv:
        done, failed = run(gets_for(srv.url, repo), headers=lambda u: None)
    assert done == {} and set(failed) == set(repo.files) and srv.log == []


def test_nothing_listens_the_gets_are_handed_back() -> None:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # a free port nobody listens on
    done, failed = run([Get(f"http://127.0.0.1:{port}/x/{i}", 10, i) for i in range(3)])
    assert done == {} and len(failed) == 3 and all(f.status == 0 for f in failed.values())


def test_stop_ends_the_run_at_once() -> None:
    repo = Repo("org/stop", files(4, size=400_000), lfs=set())
    with fault_server(repo, nodelay=True, chunk=8 * 1024, delay=0.05) as srv:
        t0 = time.monotonic()
        done, failed = run(gets_for(srv.url, repo), stop=lambda: time.monotonic() - t0 > 0.3)
        assert time.monotonic() - t0 < 1.5
    assert done == {} and failed == {}


# -- raw servers that misbehave --------------------------------------------------------------------

@contextmanager
def raw_server(answer: Callable[[socket.socket, int], None]) -> Iterator[str]:
    """Accept connections; ``answer(conn, n)`` handles the n-th one (counting from 0)."""
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(16)
    stop = threading.Event()

    def loop() -> None:
        n = 0
        lsock.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = lsock.accept()
            except OSError:
                continue
            threading.Thread(target=answer, args=(conn, n), daemon=True).start()
            n += 1

    t = threading.Thread(target=loop, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{lsock.getsockname()[1]}"
    finally:
        stop.set()
        t.join()
        lsock.close()


def read_request(conn: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(4096)
        if not chunk:
            return b""
        data += chunk
    return data


def test_an_idle_connection_the_server_closed_is_retried_once_on_a_fresh_one() -> None:
    """The server answers one request per connection but says keep-alive (it then closes): the
    next get on that connection meets EOF and goes again on a new connection, not to fallback."""
    body = b"x" * 1000

    def answer(conn: socket.socket, _n: int) -> None:
        with conn:
            if read_request(conn):
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + body)
            time.sleep(0.05)

    with raw_server(answer) as base:
        done, failed = run([Get(f"{base}/f/{i}", 1000, i) for i in range(6)], width=1)
    assert failed == {} and len(done) == 6 and all(v == body for v in done.values())


@pytest.mark.parametrize("head", [
    b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999\r\n\r\n",  # far more than the size: not allocated
    b"HTTP/1.1 200 OK\r\nContent-Length: -5\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
    b"HTTP/1.1 200 OK\r\n" + b"X-Junk: " + b"a" * 70_000 + b"\r\n\r\n",  # a head that never ends
    b"garbage\r\n\r\n",
])
def test_a_hostile_answer_is_handed_back_without_harm(head: bytes) -> None:
    def answer(conn: socket.socket, _n: int) -> None:
        with conn:
            if read_request(conn):
                try:
                    conn.sendall(head)
                    time.sleep(0.3)
                except OSError:
                    pass

    with raw_server(answer) as base:
        done, failed = run([Get(f"{base}/f", 10, "f")], timeout=2.0)
    assert done == {} and failed["f"].status == 0


def test_a_redirect_loop_is_handed_back() -> None:
    def answer(conn: socket.socket, _n: int) -> None:
        with conn:
            while read_request(conn):
                conn.sendall(b"HTTP/1.1 302 Found\r\nLocation: /again\r\nContent-Length: 0\r\n\r\n")

    with raw_server(answer) as base:
        done, failed = run([Get(f"{base}/f", 10, "f")])
    assert done == {} and "redirect" in failed["f"].why


def test_a_redirect_to_another_scheme_is_handed_back() -> None:
    def answer(conn: socket.socket, _n: int) -> None:
        with conn:
            if read_request(conn):
                conn.sendall(b"HTTP/1.1 302 Found\r\nLocation: file:///etc/passwd\r\nContent-Length: 0\r\n\r\n")

    with raw_server(answer) as base:
        done, failed = run([Get(f"{base}/f", 10, "f")])
    assert done == {} and "f" in failed


# -- TLS ---------------------------------------------------------------------------------------------

def test_files_arrive_over_tls_and_an_untrusted_certificate_is_refused() -> None:
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    repo = Repo("org/tls", files(30, size=40_000), lfs=set())
    with fault_server(repo, nodelay=True) as srv:
        httpd = ThreadingHTTPServer(("127.0.0.1", 0), srv.handler())  # the same repo, behind TLS
        server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        cert.configure_cert(server_ctx)
        httpd.socket = server_ctx.wrap_socket(httpd.socket, server_side=True)
        httpd.daemon_threads = True
        t = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        t.start()
        try:
            base = f"https://localhost:{httpd.server_address[1]}"
            client_ctx = ssl.create_default_context()
            ca.configure_trust(client_ctx)
            done, failed = run(gets_for(base, repo), width=5, tls=lambda: client_ctx)
            assert failed == {} and done == repo.files
            done, failed = run(gets_for(base, repo)[:2], tls=ssl.create_default_context)  # the system CAs
            assert done == {} and len(failed) == 2 and all(f.status == 0 for f in failed.values())
        finally:
            httpd.shutdown()
            httpd.server_close()



def test_a_download_over_https_trusts_the_configured_bundle_for_api_calls_and_bodies(tmp_path) -> None:  # noqa: ANN001
    """End to end through ``ModelCache.download``: API calls (httpx) and file bodies (the raw pool
    and the small-file loop) use the one context of ``HubClient.tls_context`` — built from the
    configured CA bundle, so a private CA works for both, and the system CAs are not silently
    used for either."""
    trustme = pytest.importorskip("trustme")
    from modelcache.service.model_cache import ModelCache
    from modelcache.settings import Network, Settings
    from modelcache.tokens import TokenSource

    ca = trustme.CA()
    cert = ca.issue_cert("localhost")
    bundle = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    data = {**files(40, size=20_000), "model.safetensors": os.urandom(3 * 1024 * 1024)}
    repo = Repo("org/tlsdl", data)
    with fault_server(repo, nodelay=True) as srv:
        httpd = ThreadingHTTPServer(("127.0.0.1", 0), srv.handler())
        server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        cert.configure_cert(server_ctx)
        httpd.socket = server_ctx.wrap_socket(httpd.socket, server_side=True)
        httpd.daemon_threads = True
        threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        try:
            endpoint = f"https://localhost:{httpd.server_address[1]}"
            mc = ModelCache(Settings(cache_dir=tmp_path / "cache", endpoint=endpoint, token=TokenSource(),
                                     network=Network(ca_bundle=str(bundle)), retries=0, small_file_bytes=64 * 1024))
            result = mc.download(repo.repo_id)
            for path, body in data.items():
                assert (result.snapshot / path).read_bytes() == body
            untrusting = ModelCache(Settings(cache_dir=tmp_path / "other", endpoint=endpoint, token=TokenSource(),
                                             retries=0, api_deadline=2.0))
            with pytest.raises(Exception, match="(?i)certificate|ssl|tls|connect"):
                untrusting.download(repo.repo_id)
        finally:
            httpd.shutdown()
            httpd.server_close()
