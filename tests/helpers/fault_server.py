"""A small HF-compatible upstream on loopback that can misbehave on purpose.

It serves an in-memory repo (revision, tree and resolve endpoints) and injects faults per
file: truncated bodies, corrupted bytes, 5xx/429 answers, an ignored or wrong Range, slow
bodies (so a test can SIGKILL a download half-way), and a cross-origin redirect to a second
"CDN" server. Every request is logged with the Authorization header it carried and the
bytes it was sent.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

from modelcache.hashing import git_blob_sha1, lfs_pointer


@dataclass
class Faults:
    truncate: int = 0  # first N GETs send half the body, then close
    corrupt: int = 0  # first N GETs flip one byte
    statuses: list[int] = field(default_factory=list)  # answered (in order) before serving
    retry_after: str | None = None
    ignore_range: bool = False
    wrong_range: int = 0  # first N ranged GETs answer a Content-Range other than asked
    extra_bytes: int = 0  # first N GETs append junk past the size
    stall: int = 0  # first N GETs stop sending half-way for stall_seconds (connection kept open)
    stall_seconds: float = 3.0
    error_body: int = 0  # injected statuses come with a body of this many bytes (a huge error page)


@dataclass
class LogEntry:
    method: str
    path: str
    authorization: str | None
    range: str | None
    status: int
    bytes_sent: int
    host: str


class Repo:
    def __init__(self, repo_id: str, files: dict[str, bytes], lfs: set[str] | None = None,
                 commit: str = "c0ffee" * 6 + "c0ff") -> None:
        self.repo_id = repo_id
        self.files = files
        self.commit = commit
        self.lfs = lfs if lfs is not None else {p for p in files if p.endswith((".safetensors", ".bin"))}

    def tree(self) -> list[dict]:
        out = []
        for path, data in sorted(self.files.items()):
            item = {"type": "file", "path": path, "size": len(data)}
            if path in self.lfs:
                sha = hashlib.sha256(data).hexdigest()
                item["oid"] = git_blob_sha1(lfs_pointer(sha, len(data)))
                item["lfs"] = {"oid": sha, "size": len(data), "pointerSize": 130}
            else:
                item["oid"] = git_blob_sha1(data)
            out.append(item)
        return out

    def etag(self, path: str) -> str:
        data = self.files[path]
        return hashlib.sha256(data).hexdigest() if path in self.lfs else git_blob_sha1(data)


class FaultServer:
    def __init__(self, repo: Repo, *, chunk: int = 64 * 1024, delay: float = 0.0) -> None:
        self.repo = repo
        self.faults: dict[str, Faults] = {}
        self.log: list[LogEntry] = []
        self.chunk = chunk
        self.delay = delay  # seconds between chunks of a body (throttle)
        self.redirect_to: str | None = None  # base URL of a CDN FaultServer for LFS files
        self.tree_override: list[dict] | None = None
        self._lock = threading.Lock()
        self.url = ""
        self.live_bytes = 0  # body bytes written so far, counted as they go (killed requests too)
        self.valid_tokens: set[str] | None = None  # set: files need one of these bearer tokens
        self.gated = False  # with valid_tokens: answer like a gated repo (GatedRepo codes)
        self.dead = False  # "the upstream died": file bodies stop mid-way, new file requests are cut
        self.api_statuses: list[int] = []  # answered (in order) to /api/ calls before serving them
        self.connections = 0  # TCP connections accepted so far

    def bytes_served(self, path: str | None = None) -> int:
        with self._lock:
            return sum(e.bytes_sent for e in self.log if e.method == "GET" and "/resolve/" in e.path
                       and (path is None or e.path.endswith("/" + path)))

    def _fault(self, path: str) -> Faults:
        return self.faults.setdefault(path, Faults())

    def handler(self) -> type[BaseHTTPRequestHandler]:
        srv = self

        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a: object) -> None:
                pass

            def handle(self) -> None:  # (one call per connection: keep-alive requests loop inside)
                with srv._lock:
                    srv.connections += 1
                try:
                    super().handle()
                except (ConnectionResetError, BrokenPipeError):
                    pass

            def _log(self, status: int, sent: int) -> None:
                with srv._lock:
                    srv.log.append(LogEntry(self.command, self.path, self.headers.get("Authorization"),
                                            self.headers.get("Range"), status, sent, self.headers.get("Host", "")))

            def _json(self, status: int, obj: object, headers: dict[str, str] | None = None) -> None:
                body = json.dumps(obj).encode()
                self._log(status, 0)  # before answering: a client that got the answer finds it in the log
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                if self.command != "HEAD":  # a HEAD answer has headers only (a body would spoil keep-alive)
                    self.wfile.write(body)

            def do_HEAD(self) -> None:  # noqa: N802
                self.do_GET()

            def _token(self) -> str | None:
                auth = self.headers.get("Authorization") or ""
                return auth[7:] if auth.startswith("Bearer ") else None

            def do_GET(self) -> None:  # noqa: N802
                repo = srv.repo
                path = urlsplit(self.path).path
                api = f"/api/models/{repo.repo_id}/"
                if path.startswith("/api/") and srv.api_statuses:
                    with srv._lock:
                        status = srv.api_statuses.pop(0) if srv.api_statuses else None
                    if status:
                        return self._json(status, {"error": "injected"}, {"Retry-After": "1"} if status == 429 else {})
                if path == "/api/whoami-v2":
                    if srv.valid_tokens is not None and self._token() in srv.valid_tokens:
                        return self._json(200, {"name": "tester", "auth": {"accessToken": {"role": "read"}}})
                    return self._json(401, {"error": "Invalid credentials in Authorization header"})
                if path.startswith(api + "revision/"):
                    return self._json(200, {"id": repo.repo_id, "sha": repo.commit, "private": False,
                                            "gated": "manual" if srv.gated else False,
                                            "siblings": [{"rfilename": p} for p in sorted(repo.files)]})
                if path.startswith(api + "tree/"):
                    return self._json(200, srv.tree_override if srv.tree_override is not None else repo.tree())
                if path.startswith("/api/"):
                    return self._json(404, {"error": "not found"}, {"X-Error-Code": "RepoNotFound"})
                prefix = f"/{repo.repo_id}/resolve/"
                if not path.startswith(prefix):
                    return self._json(404, {"error": "not found"}, {"X-Error-Code": "RepoNotFound"})
                if srv.dead:
                    self.close_connection = True
                    return self._log(0, 0)
                rest = path[len(prefix):]
                _rev, _, fpath = rest.partition("/")
                fpath = unquote(fpath)
                if srv.valid_tokens is not None and self._token() not in srv.valid_tokens:
                    code = "GatedRepo" if srv.gated else "RepoNotFound"
                    status = 403 if (srv.gated and self._token()) else 401
                    return self._json(status, {"error": "restricted"}, {"X-Error-Code": code})
                if fpath not in repo.files:
                    return self._json(404, {"error": "entry"}, {"X-Error-Code": "EntryNotFound",
                                                                "X-Repo-Commit": repo.commit})
                if srv.redirect_to and fpath in repo.lfs:
                    self.send_response(302)
                    self.send_header("Location", f"{srv.redirect_to}{path}")
                    self.send_header("X-Repo-Commit", repo.commit)
                    self.send_header("X-Linked-Etag", f'"{repo.etag(fpath)}"')
                    self.send_header("X-Linked-Size", str(len(repo.files[fpath])))
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return self._log(302, 0)
                self._serve_file(fpath)

            def _error_page(self, status: int, size: int) -> None:
                """An error answer with a ``size``-byte body, sent until the client stops reading."""
                self.send_response(status)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(size))
                self.end_headers()
                sent, piece = 0, b"<p>busy</p>" * 6000
                try:
                    while sent < size:
                        n = min(len(piece), size - sent)
                        self.wfile.write(piece[:n])
                        sent += n
                except (BrokenPipeError, ConnectionResetError):
                    self.close_connection = True
                self._log(status, sent)

            def _serve_file(self, fpath: str) -> None:
                data = srv.repo.files[fpath]
                f = srv._fault(fpath)
                with srv._lock:
                    status_override = f.statuses.pop(0) if f.statuses else None
                if status_override and f.error_body:
                    return self._error_page(status_override, f.error_body)
                if status_override:
                    hdrs = {"Retry-After": f.retry_after} if f.retry_after and status_override == 429 else {}
                    return self._json(status_override, {"error": "injected"}, hdrs)
                start, stop, status = 0, len(data), 200
                rng = self.headers.get("Range")
                if rng and not f.ignore_range and rng.startswith("bytes="):
                    a, _, b = rng[6:].partition("-")
                    start, stop = int(a), (int(b) + 1 if b else len(data))
                    status = 206
                body = data[start:stop]
                content_range = f"bytes {start}-{stop - 1}/{len(data)}"
                with srv._lock:
                    if status == 206 and f.wrong_range:
                        f.wrong_range -= 1
                        start = 0 if start else 1
                        content_range = f"bytes {start}-{stop - 1}/{len(data)}"
                        body = data[start:stop]
                    truncate = f.truncate > 0 and self.command == "GET"
                    if truncate:
                        f.truncate -= 1
                    corrupt = f.corrupt > 0 and self.command == "GET"
                    if corrupt:
                        f.corrupt -= 1
                    extra = f.extra_bytes > 0 and self.command == "GET"
                    if extra:
                        f.extra_bytes -= 1
                if corrupt and body:
                    i = len(body) // 2
                    body = body[:i] + bytes([body[i] ^ 0xFF]) + body[i + 1:]
                self.send_response(status)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(body) + (7 if extra else 0)))
                self.send_header("ETag", f'"{srv.repo.etag(fpath)}"')
                self.send_header("X-Repo-Commit", srv.repo.commit)
                if status == 206:
                    self.send_header("Content-Range", content_range)
                self.end_headers()
                if self.command == "HEAD":
                    return self._log(status, 0)
                if truncate:
                    body = body[: len(body) // 2]
                with srv._lock:
                    stall = f.stall > 0 and self.command == "GET"
                    if stall:
                        f.stall -= 1
                sent = 0
                try:
                    for i in range(0, len(body), srv.chunk):
                        if srv.dead:
                            self.close_connection = True
                            break
                        piece = body[i:i + srv.chunk]
                        self.wfile.write(piece)
                        sent += len(piece)
                        with srv._lock:
                            srv.live_bytes += len(piece)
                        if stall and sent >= len(body) // 2:
                            self.wfile.flush()
                            time.sleep(f.stall_seconds)
                            stall = False
                        if srv.delay:
                            self.wfile.flush()
                            time.sleep(srv.delay)
                    if extra:
                        self.wfile.write(b"garbage")
                except (BrokenPipeError, ConnectionResetError):
                    pass
                self._log(status, sent)
                if truncate:
                    self.close_connection = True

        return H


class _Server(ThreadingHTTPServer):
    request_queue_size = 256
    """The listen backlog: the default 5 drops the SYNs of a client opening many connections at
    once (the small-file loop opens up to 4 x connections), each then retried only after 1 s."""


@contextmanager
def fault_server(repo: Repo, *, nodelay: bool = False, **kw: object) -> Iterator[FaultServer]:
    """Serve ``repo`` on a free loopback port; ``nodelay``: Nagle off (no 40 ms delayed-ACK stall
    per request, for tests that make many short requests)."""
    fs = FaultServer(repo, **kw)  # type: ignore[arg-type]
    handler = fs.handler()
    if nodelay:
        handler = type("NoDelay", (handler,), {"disable_nagle_algorithm": True})
    httpd = _Server(("127.0.0.1", 0), handler)
    httpd.daemon_threads = True
    fs.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    t = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    t.start()
    try:
        yield fs
    finally:
        httpd.shutdown()
        httpd.server_close()
