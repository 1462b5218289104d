"""#11.3–#11.6, #11.13: hostile callers of ``serve``.

Access decisions are made on the validated request and cached under exactly it; an
unreadable access record fails closed; encoded dot segments never reach the upstream; no
400-vs-404 oracle for private repos; plain-http token checks need an opt-in; slow clients
and FIFOs never hold the server.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from helpers.live_server import import_demo, live_server

from modelcache.cache.access import Access, read_access, write_access
from modelcache.cache.layout import RepoLayout
from modelcache.cli.main import cli
from modelcache.errors import InvalidInput
from modelcache.server import TokenListPolicy, UpstreamPolicy

GATED, PUBLIC, PRIVATE = "org/gated", "org/public", "org/private"
TOKEN = "hf_testTOKENcallerCCCCCCCCCCCCCCCCCCCC"


class _Upstream:
    """A Hub that grants ``TOKEN`` only what ``grant(path)`` allows; logs every request path."""

    def __init__(self, grant) -> None:  # type: ignore[no-untyped-def]
        self.grant, self.paths = grant, []
        up = self

        class Handler(BaseHTTPRequestHandler):
            def do_HEAD(self) -> None:  # noqa: N802
                up.paths.append(self.path)
                ok = self.headers.get("authorization") == f"Bearer {TOKEN}" and up.grant(self.path)
                self.send_response(200 if ok else 403)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *a: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    cache = tmp_path / "cache"
    for repo in (GATED, PUBLIC, PRIVATE):
        import_demo(cache, repo)
    write_access(RepoLayout(cache, "model", GATED), Access(gated=True))
    write_access(RepoLayout(cache, "model", PRIVATE), Access(private=True))
    return cache


def _get(url: str, path: str, token: str | None = TOKEN) -> httpx.Response:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    return httpx.get(url + path, headers=headers, trust_env=False, timeout=10)


def test_encoded_dot_segments_never_reach_the_upstream(cache: Path) -> None:
    up = _Upstream(lambda p: p.startswith("/org/public/"))
    try:
        with live_server(cache, access=UpstreamPolicy(up.url, ttl=60)) as url:
            tricks = [
                f"/{GATED}/resolve/main/%2e%2e/%2e%2e/%2e%2e/{PUBLIC}/resolve/main/config.json",
                f"/{GATED}/resolve/main/..%2F..%2F..%2F{PUBLIC}%2Fresolve%2Fmain%2Fconfig.json",
                f"/{GATED}/resolve/main/%2E%2E/%2E%2E/%2E%2E/{PUBLIC}/resolve/main/config.json",
                f"/{GATED}/resolve/main/sub%2F..%2F..%2Fx/config.json",
                f"/{GATED}/resolve/%2e%2e/config.json",
            ]
            for trick in tricks:
                r = _get(url, trick)
                assert r.status_code == 400, (trick, r.status_code)
            assert up.paths == []  # refused before any upstream call
            # the real gated file: asked upstream for exactly that repo and path, refused
            assert _get(url, f"/{GATED}/resolve/main/config.json").status_code == 403
            assert up.paths == [f"/{GATED}/resolve/main/config.json".replace("main", _commit(cache, GATED))]
            # and the "allowed" answer of the public repo was never cached for the gated one
            assert _get(url, f"/{GATED}/resolve/main/model-00001-of-00002.safetensors").status_code == 403
    finally:
        up.close()


def _commit(cache: Path, repo: str) -> str:
    return RepoLayout(cache, "model", repo).read_ref("main")  # type: ignore[return-value]


def test_decision_is_cached_per_path(cache: Path) -> None:
    # like the Hub for gated repos: README is readable, the weights are not
    up = _Upstream(lambda p: p.endswith("/README.md"))
    try:
        with live_server(cache, access=UpstreamPolicy(up.url, ttl=60)) as url:
            assert _get(url, f"/{GATED}/resolve/main/README.md").status_code == 200
            assert _get(url, f"/{GATED}/resolve/main/config.json").status_code == 403
            assert _get(url, f"/{GATED}/resolve/main/README.md").status_code == 200
            assert len(up.paths) == 2  # cached per (token, repo, revision, path)
    finally:
        up.close()


@pytest.mark.parametrize("junk", ["fifo", "dir", "binary", "types", "emfile"])
def test_unreadable_access_record_fails_closed_and_is_not_cached(cache: Path, junk: str,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    layout = RepoLayout(cache, "model", PRIVATE)
    record = layout.state / "access.json"
    record.unlink()
    if junk == "fifo":
        os.mkfifo(record)
    elif junk == "dir":
        record.mkdir()
    elif junk == "binary":
        record.write_bytes(b"\xff\x00" * 10)
    elif junk == "types":
        record.write_text('{"gated": "no", "private": 0}')
    else:
        record.write_text('{"private": true}')
        import modelcache.files as files

        real_open = os.open

        def emfile(path, *a, **kw):  # type: ignore[no-untyped-def]
            if str(path).endswith("access.json"):
                raise OSError(24, "Too many open files")
            return real_open(path, *a, **kw)

        monkeypatch.setattr(files.os, "open", emfile)
    assert read_access(layout).restricted
    with live_server(cache) as url:
        for _ in range(2):
            r = _get(url, f"/{PRIVATE}/resolve/main/config.json", token=None)
            assert r.status_code == 404 and r.headers["x-error-code"] == "RepoNotFound"
        monkeypatch.undo()
        if record.is_dir():
            os.rmdir(record)
        else:
            record.unlink()
        write_access(layout, Access())  # fixed: public now; the failure was never cached
        assert _get(url, f"/{PRIVATE}/resolve/main/config.json", token=None).status_code == 200


def test_no_400_vs_404_oracle_for_private_repos(cache: Path, tmp_path: Path) -> None:
    allowed = tmp_path / "tokens"
    allowed.write_text("hf_testTOKENotherDDDDDDDDDDDDDDDDDDDDD\n")
    with live_server(cache, access=TokenListPolicy.from_file(allowed)) as url:
        for tail in ("resolve/main/config.json", "resolve/no-such-branch/config.json",
                     "resolve/%2e%2e/config.json", "resolve/main/a%2F..%2Fb", "resolve/main/%00",
                     "resolve/refs%2Fpr%2F1/config.json", "resolve/main/.git/config"):
            private = _get(url, f"/{PRIVATE}/{tail}")
            absent = _get(url, f"/org/never-cached/{tail}")
            assert (private.status_code, private.headers.get("x-error-code")) == \
                (absent.status_code, absent.headers.get("x-error-code")), tail
        for api in ("api/models/{}", "api/models/{}/revision/main", "api/models/{}/tree/main",
                    "api/models/{}/tree/%2e%2e"):
            private = _get(url, "/" + api.format(PRIVATE))
            absent = _get(url, "/" + api.format("org/never-cached"))
            assert private.status_code == absent.status_code, api


def test_plain_http_auth_upstream_needs_an_opt_in(cache: Path) -> None:
    with pytest.raises(InvalidInput, match="in clear"):
        UpstreamPolicy("http://hub.internal.example:8080")
    with pytest.raises(InvalidInput, match="in clear"):
        UpstreamPolicy("http://10.0.0.7")
    UpstreamPolicy("http://hub.internal.example", allow_insecure=True)
    UpstreamPolicy("http://127.0.0.1:9")
    UpstreamPolicy("http://localhost:9")
    UpstreamPolicy("https://huggingface.co")
    res = CliRunner().invoke(cli, ["--cache-dir", str(cache), "serve", "--auth-upstream", "http://10.0.0.7"], obj={})
    assert res.exit_code == 2 and "--allow-insecure-auth-upstream" in res.output
    assert "Traceback" not in res.output


def test_readyz_does_not_show_the_cache_path(cache: Path) -> None:
    with live_server(cache) as url:
        r = httpx.get(url + "/readyz", trust_env=False)
        assert r.status_code == 200 and str(cache) not in r.text and "cache" not in r.text


def test_fifo_at_a_ref_never_blocks_the_server(cache: Path) -> None:
    ref = RepoLayout(cache, "model", PUBLIC).ref("main")
    ref.unlink()
    os.mkfifo(ref)
    (ref.parent / "v1").mkdir()  # a folder where a ref belongs
    with live_server(cache) as url:
        for path in (f"/{PUBLIC}/resolve/main/config.json", f"/api/models/{PUBLIC}", f"/api/models/{PUBLIC}/revision/v1",
                     f"/{PUBLIC}/resolve/v1/config.json", "/modelcache/models", "/metrics"):
            r = httpx.get(url + path, trust_env=False, timeout=10)
            assert r.status_code in (200, 404), (path, r.status_code)
        assert httpx.get(url + "/healthz", trust_env=False, timeout=5).status_code == 200


# -- #11.5: slow clients ---------------------------------------------------------------------------------------
@contextmanager
def _guarded_server(cache: Path, header_timeout: float, max_connections: int,
                    protocol: str = "default") -> Iterator[tuple[str, int]]:
    import uvicorn

    from modelcache.server import create_app
    from modelcache.server._limits import GuardedH11Protocol, HeadGuard, uvicorn_limits

    old = HeadGuard.header_timeout, HeadGuard.max_connections
    HeadGuard.header_timeout, HeadGuard.max_connections = header_timeout, max_connections
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    port = sock.getsockname()[1]
    limits = uvicorn_limits(keep_alive=1.0)
    if protocol == "h11":
        limits["http"] = GuardedH11Protocol
    limits["limit_concurrency"] = max_connections + 10
    limits.pop("backlog")
    server = uvicorn.Server(uvicorn.Config(create_app(cache), log_level="error", lifespan="off", **limits))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                httpx.get(url + "/healthz", trust_env=False, timeout=1)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline
                time.sleep(0.02)
        yield url, port
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
        HeadGuard.header_timeout, HeadGuard.max_connections = old


def _closed(s: socket.socket, within: float = 10.0) -> bool:
    s.settimeout(within)
    try:
        while True:
            data = s.recv(4096)
            if not data:
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except socket.timeout:
        return False


@pytest.mark.parametrize("protocol", ["default", "h11"])
def test_slow_and_idle_clients_are_dropped_and_capped(cache: Path, protocol: str) -> None:
    with _guarded_server(cache, header_timeout=0.5, max_connections=8, protocol=protocol) as (url, port):
        slow = socket.create_connection(("127.0.0.1", port))
        slow.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # never finishes its head
        silent = socket.create_connection(("127.0.0.1", port))  # never sends a byte
        trickle = socket.create_connection(("127.0.0.1", port))
        trickle.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        for _ in range(3):
            trickle.sendall(b"a")  # a byte now and then does not extend the deadline
            time.sleep(0.2)
        assert _closed(slow) and _closed(silent) and _closed(trickle)
        # a cap on open connections: beyond it new ones are closed at once, and the server
        # keeps answering once they go away
        hold = [socket.create_connection(("127.0.0.1", port)) for _ in range(12)]
        assert any(_closed(s, within=3.0) for s in hold[8:])
        for s in hold:
            s.close()
        deadline = time.monotonic() + 10
        while True:
            try:
                if httpx.get(url + "/healthz", trust_env=False, timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline
            time.sleep(0.05)
        # a big header block is refused, not buffered without end
        try:
            r = httpx.get(url + "/healthz", headers={"x-big": "a" * 200_000}, trust_env=False, timeout=5)
            assert r.status_code in (400, 431)
        except httpx.TransportError:
            pass  # or the connection is closed on it
        assert httpx.get(url + "/healthz", trust_env=False, timeout=5).status_code == 200


def test_serve_configures_the_limits(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import uvicorn

    from modelcache.server import create_app, serve
    from modelcache.server._limits import GuardedH11Protocol, GuardedHttpToolsProtocol, HeadGuard

    seen = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: seen.update(kw))
    old = HeadGuard.header_timeout, HeadGuard.max_connections
    try:
        serve(create_app(tmp_path), header_timeout=3.0, max_connections=77)
        assert seen["http"] in (GuardedHttpToolsProtocol, GuardedH11Protocol) and seen["timeout_keep_alive"] > 0
        assert issubclass(seen["http"], HeadGuard)
        assert seen["h11_max_incomplete_event_size"] <= 64 * 1024 and seen["limit_concurrency"]
        assert HeadGuard.header_timeout == 3.0 and HeadGuard.max_connections == 77
    finally:
        HeadGuard.header_timeout, HeadGuard.max_connections = old


def test_token_list_that_is_a_fifo_is_one_clear_error(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "tokens")
    with pytest.raises(InvalidInput, match="cannot read the token list"):
        TokenListPolicy.from_file(tmp_path / "tokens")
    (tmp_path / "bin").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(InvalidInput, match="cannot read the token list"):
        TokenListPolicy.from_file(tmp_path / "bin")
