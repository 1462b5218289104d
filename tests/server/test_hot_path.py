"""Remembered public files answered by the HTTP protocol itself (``server/_hot.py``,
``server/_protocol.py``): the same answers as the ASGI app gives, in order, counted, and
HTTP/1.0 keep-alive honoured."""

from __future__ import annotations

import json
import logging
import socket
from pathlib import Path

import httpx
import pytest
from helpers.live_server import DEMO_MODEL, DEMO_REPO, import_demo, live_server
from starlette.testclient import TestClient

from modelcache.cache.access import Access, write_access
from modelcache.cache.importer import import_folder
from modelcache.cache.layout import RepoLayout
from modelcache.server import create_app
from modelcache.server.background import running_server

CONFIG = f"/{DEMO_REPO}/resolve/main/config.json"
BIG = "/org/big/resolve/main/weights.safetensors"  # above _fast.SMALL_FILE: GET streamed by the app
_PER_ANSWER = ("date", "server", "connection")


def _big_repo(cache: Path, tmp_path: Path) -> bytes:
    src = tmp_path / "big"
    src.mkdir()
    data = bytes(range(256)) * (4096 + 7)  # ~1 MiB
    (src / "weights.safetensors").write_bytes(data)
    (src / "config.json").write_text("{}")
    import_folder(RepoLayout(cache, "model", "org/big"), src, revision="main")
    return data


def _headers(r: httpx.Response) -> dict[str, str]:
    return {k: v for k, v in r.headers.items() if k not in _PER_ANSWER}


def _read_answers(sock: socket.socket, methods: list[str]) -> list[tuple[int, dict[str, str], bytes]]:
    """Read one HTTP answer per request method from ``sock`` (Content-Length framing)."""
    buf = b""
    out = []
    for method in methods:
        while b"\r\n\r\n" not in buf:
            chunk = sock.recv(65536)
            assert chunk, f"connection closed after {len(out)} answers"
            buf += chunk
        head, _, buf = buf.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        size = 0 if method == "HEAD" else int(headers.get("content-length", "0"))
        while len(buf) < size:
            chunk = sock.recv(65536)
            assert chunk
            buf += chunk
        out.append((status, headers, buf[:size]))
        buf = buf[size:]
    return out


def test_head_answers_the_headers_get_answers_hot_or_not(tmp_path: Path) -> None:
    cache = tmp_path / "c"
    import_demo(cache)
    big = _big_repo(cache, tmp_path)
    with live_server(cache) as url, httpx.Client(base_url=url) as c:
        for path in (CONFIG, BIG):
            first_get = c.get(path)  # resolved the slow way, then remembered
            get, head = c.get(path), c.head(path)
            assert get.status_code == head.status_code == first_get.status_code == 200
            assert _headers(head) == _headers(get) == _headers(first_get)
            assert head.content == b"" and int(head.headers["content-length"]) == len(get.content)
        assert get.content == big


def test_hot_and_asgi_answers_are_identical(tmp_path: Path) -> None:
    cache = tmp_path / "c"
    import_demo(cache)
    _big_repo(cache, tmp_path)
    answers = {}
    with live_server(cache) as url, httpx.Client(base_url=url) as c:
        for path in (CONFIG, BIG):
            c.get(path)
            answers["hot", path] = c.get(path), c.head(path)
    with TestClient(create_app(cache)) as client:  # the ASGI app alone, no protocol in front
        for path in (CONFIG, BIG):
            client.get(path)
            answers["asgi", path] = client.get(path), client.head(path)
    for path in (CONFIG, BIG):
        (hot_get, hot_head), (asgi_get, asgi_head) = answers["hot", path], answers["asgi", path]
        assert _headers(hot_get) == _headers(asgi_get) == _headers(hot_head) == _headers(asgi_head)
        assert hot_get.content == asgi_get.content and hot_head.content == asgi_head.content == b""
    assert answers["hot", CONFIG][0].content == (DEMO_MODEL / "config.json").read_bytes()


def test_http10_keep_alive_is_honoured_and_plain_http10_closes(tmp_path: Path) -> None:
    cache = tmp_path / "c"
    import_demo(cache)
    with live_server(cache) as url:
        httpx.get(url + CONFIG)
        port = int(url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            for method in ("HEAD", "GET", "HEAD"):
                sock.sendall(f"{method} {CONFIG} HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n".encode())
                [(status, headers, body)] = _read_answers(sock, [method])
                assert status == 200 and headers["connection"] == "keep-alive"
                assert body == (b"" if method == "HEAD" else (DEMO_MODEL / "config.json").read_bytes())
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(f"HEAD {CONFIG} HTTP/1.0\r\n\r\n".encode())
            [(status, headers, _)] = _read_answers(sock, ["HEAD"])
            assert status == 200 and headers.get("connection") == "close"
            assert sock.recv(1) == b""  # closed by the server
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(f"GET {CONFIG} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
            [(status, headers, _)] = _read_answers(sock, ["GET"])
            assert status == 200 and headers.get("connection") == "close"
            assert sock.recv(1) == b""


def test_pipelined_requests_are_answered_in_order(tmp_path: Path) -> None:
    cache = tmp_path / "c"
    import_demo(cache)
    big = _big_repo(cache, tmp_path)
    with live_server(cache) as url:
        httpx.get(url + CONFIG)
        httpx.get(url + BIG)
        port = int(url.rsplit(":", 1)[1])
        asks = [("GET", BIG), ("GET", CONFIG), ("GET", f"/api/models/{DEMO_REPO}"), ("HEAD", CONFIG),
                ("GET", "/healthz"), ("GET", CONFIG)]
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(b"".join(f"{m} {p} HTTP/1.1\r\nHost: x\r\n\r\n".encode() for m, p in asks))
            answers = _read_answers(sock, [m for m, _ in asks])
    config = (DEMO_MODEL / "config.json").read_bytes()
    assert [a[0] for a in answers] == [200] * len(asks)
    assert answers[0][2] == big and answers[1][2] == config and answers[5][2] == config
    assert json.loads(answers[2][2])["id"] == DEMO_REPO and json.loads(answers[4][2]) == {"status": "ok"}
    assert answers[3][2] == b"" and answers[3][1]["content-length"] == str(len(config))


def test_a_restricted_repo_is_never_answered_hot(tmp_path: Path) -> None:
    cache = tmp_path / "c"
    import_demo(cache)
    tokens = tmp_path / "tokens"
    tokens.write_text("good-token\n")
    from modelcache.server import TokenListPolicy

    with live_server(cache, access=TokenListPolicy.from_file(tokens)) as url:
        assert httpx.get(url + CONFIG).status_code == 200
        write_access(RepoLayout(cache, "model", DEMO_REPO), Access(gated=True))
        for _ in range(2):
            assert httpx.get(url + CONFIG).status_code == 401
            assert httpx.head(url + CONFIG).status_code == 401
            assert httpx.get(url + CONFIG, headers={"Authorization": "Bearer bad"}).status_code == 403
            ok = httpx.get(url + CONFIG, headers={"Authorization": "Bearer good-token"})
            assert ok.status_code == 200 and ok.content == (DEMO_MODEL / "config.json").read_bytes()
        write_access(RepoLayout(cache, "model", DEMO_REPO), Access(private=True))
        assert httpx.get(url + CONFIG).status_code == 404
        assert httpx.head(url + CONFIG).status_code == 404
        write_access(RepoLayout(cache, "model", DEMO_REPO), Access())
        assert httpx.get(url + CONFIG).status_code == 200


def test_hot_answers_are_counted_and_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    cache = tmp_path / "c"
    import_demo(cache)
    size = len((DEMO_MODEL / "config.json").read_bytes())
    caplog.set_level(logging.INFO, logger="modelcache.server")
    with running_server(cache, log_json=True) as url:
        for _ in range(3):
            assert httpx.get(url + CONFIG).status_code == 200
        assert httpx.head(url + CONFIG).status_code == 200
        text = httpx.get(f"{url}/metrics").text
    values = {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
              if line and not line.startswith("#")}
    assert values["modelcache_cache_hits_total"] == 4
    assert values["modelcache_served_bytes_total"] == 3 * size
    assert values['modelcache_requests_total{endpoint="resolve",status="200"}'] == 4
    lines = [json.loads(r.message) for r in caplog.records if r.name == "modelcache.server" and r.message.startswith("{")]
    served = [(x["method"], x["status"], x["kind"], x["bytes"]) for x in lines if x["path"] == CONFIG]
    assert served == [("GET", 200, "resolve", size)] * 3 + [("HEAD", 200, "resolve", size)]
