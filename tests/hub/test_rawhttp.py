"""The minimal socket client: keep-alive reuse, stale connections, fallbacks to httpx."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from helpers.fault_server import Repo, fault_server

from modelcache import ModelCache, Settings, TokenSource
from modelcache.hub.rawhttp import RawPool, Unsupported


def test_keep_alive_and_stale_connection() -> None:
    repo = Repo("org/r", {"a.bin": b"x" * 100_000, "b.txt": b"hello"})
    with fault_server(repo) as srv:
        pool = RawPool(timeout=5)
        for _ in range(3):
            r = pool.get(f"{srv.url}/org/r/resolve/main/a.bin", {})
            assert r.status_code == 200 and r.read() == repo.files["a.bin"]
        assert sum(len(v) for v in pool._idle.values()) == 1  # one connection, reused
        # the server drops the idle connection: the next request reconnects transparently
        for conns in pool._idle.values():
            for c in conns:
                c.sock.shutdown(2)
        r = pool.get(f"{srv.url}/org/r/resolve/main/b.txt", {"Range": "bytes=1-3"})
        assert r.status_code == 206 and r.read() == b"ell"
        pool.close()


def test_refused_and_bad_urls() -> None:
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    with pytest.raises(httpx.ConnectError):
        RawPool(timeout=2).get(f"http://127.0.0.1:{port}/x", {})
    with pytest.raises(Unsupported):
        RawPool().get("ftp://host/x", {})


class _Chunked(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    body = b"config" * 1000

    def do_GET(self) -> None:  # noqa: N802
        if "/api/models/org/c/revision/" in self.path:
            data = b'{"id": "org/c", "sha": "' + b"1" * 40 + b'"}'
            return self._plain(data)
        if "/api/models/org/c/tree/" in self.path:
            from modelcache.hashing import git_blob_sha1

            return self._plain(('[{"type": "file", "path": "config.json", "size": %d, "oid": "%s"}]'
                                % (len(self.body), git_blob_sha1(self.body))).encode())
        self.send_response(200)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for i in range(0, len(self.body), 1000):
            piece = self.body[i:i + 1000]
            self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
        self.wfile.write(b"0\r\n\r\n")

    def _plain(self, data: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *a: object) -> None:
        pass


def test_chunked_body_falls_back_to_httpx(tmp_path: Path) -> None:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Chunked)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{httpd.server_address[1]}"
        with ModelCache(Settings(cache_dir=tmp_path / "c", endpoint=url, token=TokenSource())) as mc:
            res = mc.download("org/c")
        assert (res.snapshot / "config.json").read_bytes() == _Chunked.body
    finally:
        httpd.shutdown()
