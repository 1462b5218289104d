"""A mirror never tells an unauthorized caller that a private repo exists: once the repo is recorded
private, an unknown revision of it is answered like a repo that is not there (404 RepoNotFound),
not with the RevisionNotFound the upstream gave the mirror's own token."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
from helpers.live_server import live_server

from modelcache.hub.client import HubClient
from modelcache.server.mirror import Mirror
from modelcache.settings import Settings

COMMIT = "c0" * 20


class _Upstream(BaseHTTPRequestHandler):
    """``org/secret`` is private (the mirror's token sees it) and has only ``main``."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *a: object) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802
        path = self.path.split("?")[0]
        headers: dict[str, str] = {}
        if path.startswith("/api/models/org/secret/revision/main"):
            status, body = 200, {"id": "org/secret", "sha": COMMIT, "private": True, "gated": False, "siblings": []}
        elif path.startswith("/api/models/org/secret/tree/"):
            status, body = 200, []
        elif path.startswith(("/api/models/org/secret/", "/org/secret/")):
            status, body, headers = 404, {"error": "revision"}, {"X-Error-Code": "RevisionNotFound"}
        else:
            status, body, headers = 404, {"error": "repo"}, {"X-Error-Code": "RepoNotFound"}
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(data)))
        for k, v in headers.items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    do_HEAD = do_GET


@contextmanager
def _upstream() -> Iterator[str]:
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Upstream)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}"
    finally:
        srv.shutdown()
        srv.server_close()


def test_unknown_revision_of_a_recorded_private_repo_reads_as_no_repo(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    with _upstream() as up:
        mirror = Mirror(Settings(cache_dir=cache, endpoint=up, retries=1), HubClient(up))
        with live_server(cache, mirror=mirror) as url:
            r = httpx.get(f"{url}/api/models/org/secret/revision/main")  # the mirror records it: private
            assert (r.status_code, r.headers.get("x-error-code")) == (404, "RepoNotFound")
            absent = httpx.get(f"{url}/api/models/org/nothere/revision/nope")
            for path in ("/api/models/org/secret/revision/nope", "/org/secret/resolve/nope/config.json"):
                r = httpx.get(url + path)
                assert (r.status_code, r.headers.get("x-error-code")) == (absent.status_code, "RepoNotFound"), path
