"""The benchmark upstream's HTTP/1.1 server: one repo, the Hub endpoints HF clients use, throttled.

Keep-alive, bodies with ``loop.sendfile`` in pieces (the server costs little CPU), a token bucket
per connection and one shared by all connections, an optional sleep before every answer. The
endpoints and the CLI are described in ``benchmarks/upstream.py``.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import socket
import sys
from email.utils import formatdate
from pathlib import Path
from urllib.parse import parse_qs, quote, unquote, urlsplit

from .sourcerepo import FileInfo, Repo
from .throttle import TokenBucket

__all__ = ["PAGE_SIZE", "Upstream", "parse_range"]

PAGE_SIZE = 1000  # tree entries per page, like the Hub


_REASON = {200: "OK", 206: "Partial Content", 400: "Bad Request", 404: "Not Found",
           405: "Method Not Allowed", 416: "Range Not Satisfiable", 500: "Internal Server Error"}


class _Reply(Exception):
    def __init__(self, status: int, code: str = "", message: str = "") -> None:
        self.status, self.code, self.message = status, code, message


def parse_range(value: str, size: int) -> tuple[int, int] | None | str:
    """``bytes=a-b`` -> (a, b+1); None = ignore (serve 200); 'unsatisfiable' -> 416."""
    if not value.startswith("bytes=") or "," in value:
        return None
    spec = value[6:].strip()
    a, sep, b = spec.partition("-")
    if not sep:
        return None
    try:
        if a == "":
            n = int(b)
            if n <= 0:
                return "unsatisfiable"
            return max(0, size - n), size
        start = int(a)
        end = int(b) + 1 if b else size
    except ValueError:
        return None
    if start >= size or end <= start:
        return "unsatisfiable"
    return start, min(end, size)


class Upstream:
    def __init__(self, repo: Repo, *, per_conn_bps: float = 0, aggregate_bps: float = 0,
                 latency_ms: float = 0, piece_size: int | None = None) -> None:
        self.repo = repo
        self.per_conn_bps = per_conn_bps
        self.aggregate_bps = aggregate_bps
        self.latency = latency_ms / 1000.0
        throttled = bool(per_conn_bps or aggregate_bps)
        self.piece = piece_size or ((512 * 1024) if throttled else (8 << 20))
        self.aggregate: TokenBucket | None = None
        self.requests = 0
        self.bytes_sent = 0
        self.connections = 0
        self._server: asyncio.base_events.Server | None = None

    # -- lifecycle --------------------------------------------------------------------------
    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        if self.aggregate_bps:
            self.aggregate = TokenBucket(self.aggregate_bps)
        self._server = await asyncio.start_server(self._conn, host, port, backlog=1024, reuse_address=True)
        return self._server.sockets[0].getsockname()[1]

    async def serve_forever(self) -> None:
        assert self._server is not None
        async with self._server:
            await self._server.serve_forever()

    # -- connections ------------------------------------------------------------------------
    async def _conn(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        sock = writer.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass
        bucket = TokenBucket(self.per_conn_bps) if self.per_conn_bps else None
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
                    break
                lines = head.decode("latin-1").split("\r\n")
                try:
                    method, target, version = lines[0].split(" ", 2)
                except ValueError:
                    await self._send_head(writer, 400, {}, keep=False)
                    break
                headers: dict[str, str] = {}
                for line in lines[1:]:
                    if ":" in line:
                        k, _, v = line.partition(":")
                        headers[k.strip().lower()] = v.strip()
                clen = int(headers.get("content-length", "0") or 0)
                if clen:
                    await reader.readexactly(clen)
                conn_hdr = headers.get("connection", "").lower()
                keep = (version == "HTTP/1.1" and "close" not in conn_hdr) or (
                    version == "HTTP/1.0" and "keep-alive" in conn_hdr)
                self.requests += 1
                if self.latency:
                    await asyncio.sleep(self.latency)
                await self._dispatch(method, target, headers, writer, bucket, keep)
                if not keep:
                    break
        except (ConnectionError, asyncio.CancelledError):
            pass
        except Exception as exc:  # pragma: no cover - log and drop the connection
            print(f"upstream: error: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        finally:
            try:
                writer.close()
            except Exception:
                pass

    async def _send_head(self, writer: asyncio.StreamWriter, status: int, headers: dict[str, str],
                         keep: bool) -> None:
        out = [f"HTTP/1.1 {status} {_REASON.get(status, 'Unknown')}",
               f"Date: {formatdate(usegmt=True)}", "Server: modelcache-bench-upstream"]
        out += [f"{k}: {v}" for k, v in headers.items()]
        out.append("Connection: keep-alive" if keep else "Connection: close")
        writer.write(("\r\n".join(out) + "\r\n\r\n").encode("latin-1"))

    async def _send_bytes(self, writer: asyncio.StreamWriter, status: int, body: bytes,
                          headers: dict[str, str], keep: bool, head_only: bool = False) -> None:
        headers = {**headers, "Content-Length": str(len(body))}
        await self._send_head(writer, status, headers, keep)
        if not head_only:
            writer.write(body)
        await writer.drain()

    async def _send_json(self, writer, obj, keep, head_only=False, extra=None) -> None:  # type: ignore[no-untyped-def]
        body = json.dumps(obj, separators=(",", ":")).encode()
        await self._send_bytes(writer, 200, body, {"Content-Type": "application/json", **(extra or {})},
                               keep, head_only)

    async def _dispatch(self, method: str, target: str, headers: dict[str, str],
                        writer: asyncio.StreamWriter, bucket: TokenBucket | None, keep: bool) -> None:
        head_only = method == "HEAD"
        try:
            if method not in ("GET", "HEAD"):
                raise _Reply(405, "", "only GET and HEAD")
            parts = urlsplit(target)
            segs = parts.path.split("/")  # raw (still percent-encoded) segments
            query = parse_qs(parts.query)
            if parts.path == "/healthz":
                await self._send_json(writer, {"ok": True}, keep, head_only)
                return
            if len(segs) >= 7 and segs[1] == "api" and segs[2] == "models":
                repo_id = f"{unquote(segs[3])}/{unquote(segs[4])}"
                self._check_repo(repo_id)
                kind, rev = segs[5], unquote(segs[6])
                self._check_rev(rev)
                if kind == "revision" and len(segs) == 7:
                    await self._send_json(writer, self._revision(query), keep, head_only)
                    return
                if kind == "tree":
                    sub = unquote("/".join(segs[7:])).strip("/")
                    await self._tree(writer, parts, query, sub, keep, head_only)
                    return
                raise _Reply(404, "EntryNotFound", "unknown API path")
            if len(segs) >= 6 and segs[3] == "resolve":
                repo_id = f"{unquote(segs[1])}/{unquote(segs[2])}"
                self._check_repo(repo_id)
                rev = unquote(segs[4])
                self._check_rev(rev)
                path = unquote("/".join(segs[5:]))
                info = self.repo.files.get(path)
                if info is None:
                    raise _Reply(404, "EntryNotFound", f"{path} does not exist at {rev}")
                await self._resolve(writer, info, headers, bucket, keep, head_only)
                return
            raise _Reply(404, "RepoNotFound", "unknown path")
        except _Reply as r:
            h = {"Content-Type": "application/json"}
            if r.code:
                h["X-Error-Code"] = r.code
                h["X-Error-Message"] = r.message
            if r.code == "EntryNotFound":
                h["X-Repo-Commit"] = self.repo.commit
            await self._send_bytes(writer, r.status, json.dumps({"error": r.message}).encode(), h, keep, head_only)

    def _check_repo(self, repo_id: str) -> None:
        if repo_id != self.repo.repo_id:
            raise _Reply(404, "RepoNotFound", f"Repository {repo_id} not found")

    def _check_rev(self, rev: str) -> None:
        if rev not in ("main", self.repo.commit):
            raise _Reply(404, "RevisionNotFound", f"Invalid rev id: {rev}")

    def _revision(self, query: dict[str, list[str]]) -> dict[str, object]:
        blobs = query.get("blobs", ["false"])[0].lower() == "true"
        siblings = []
        for p, f in sorted(self.repo.files.items()):
            s: dict[str, object] = {"rfilename": p}
            if blobs:
                s["size"] = f.size
                s["blobId"] = f.blob_oid
                if f.lfs:
                    s["lfs"] = {"sha256": f.sha256, "size": f.size, "pointerSize": f.pointer_size}
            siblings.append(s)
        return {"id": self.repo.repo_id, "modelId": self.repo.repo_id, "sha": self.repo.commit,
                "private": False, "gated": False, "disabled": False, "tags": [], "siblings": siblings}

    async def _tree(self, writer, parts, query, sub: str, keep: bool, head_only: bool) -> None:  # type: ignore[no-untyped-def]
        recursive = query.get("recursive", ["false"])[0].lower() == "true"
        prefix = f"{sub}/" if sub else ""
        if sub and sub not in self.repo.dirs:
            raise _Reply(404, "EntryNotFound", f"{sub} does not exist")

        def wanted(p: str) -> bool:
            if not p.startswith(prefix):
                return False
            return recursive or "/" not in p[len(prefix):]

        entries: list[dict[str, object]] = []
        for d in self.repo.dirs:
            if wanted(d):
                entries.append({"type": "directory", "path": d,
                                "oid": hashlib.sha1(f"tree {d}".encode()).hexdigest()})
        entries += [f.tree_item() for p, f in sorted(self.repo.files.items()) if wanted(p)]
        try:
            cursor = int(query.get("cursor", ["0"])[0])
            limit = min(PAGE_SIZE, int(query.get("limit", [str(PAGE_SIZE)])[0]))
        except ValueError:
            raise _Reply(400, "", "bad cursor/limit") from None
        page = entries[cursor:cursor + limit]
        extra = {}
        if cursor + limit < len(entries):
            q = {k: v[0] for k, v in query.items() if k != "cursor"}
            q["cursor"] = str(cursor + limit)
            qs = "&".join(f"{quote(k)}={quote(v)}" for k, v in q.items())
            extra["Link"] = f'<{parts.path}?{qs}>; rel="next"'
        await self._send_json(writer, page, keep, head_only, extra)

    async def _resolve(self, writer: asyncio.StreamWriter, info: FileInfo, headers: dict[str, str],
                       bucket: TokenBucket | None, keep: bool, head_only: bool) -> None:
        h = {"Content-Type": "application/octet-stream", "Accept-Ranges": "bytes",
             "ETag": f'"{info.etag}"', "X-Repo-Commit": self.repo.commit,
             "X-Linked-Etag": f'"{info.etag}"', "X-Linked-Size": str(info.size)}
        status, start, end = 200, 0, info.size
        rng = headers.get("range")
        if rng:
            r = parse_range(rng, info.size)
            if r == "unsatisfiable":
                h2 = {**h, "Content-Range": f"bytes */{info.size}"}
                await self._send_bytes(writer, 416, b"", h2, keep, True)
                return
            if isinstance(r, tuple):
                status, (start, end) = 206, r
                h["Content-Range"] = f"bytes {start}-{end - 1}/{info.size}"
        h["Content-Length"] = str(end - start)
        await self._send_head(writer, status, h, keep)
        if head_only or end == start:
            await writer.drain()
            return
        await self._send_file(writer, self.repo.root / info.path, start, end - start, bucket)

    async def _send_file(self, writer: asyncio.StreamWriter, path: Path, offset: int, count: int,
                         bucket: TokenBucket | None) -> None:
        loop = asyncio.get_running_loop()
        transport = writer.transport
        with open(path, "rb", buffering=0) as f:
            while count > 0:
                n = min(self.piece, count)
                if bucket is not None:
                    await bucket.take(n)
                if self.aggregate is not None:
                    await self.aggregate.take(n)
                if transport.is_closing():
                    raise ConnectionResetError("client went away")
                sent = await loop.sendfile(transport, f, offset, n)
                if not sent:
                    raise ConnectionResetError("sendfile sent nothing")
                offset += sent
                count -= sent
                self.bytes_sent += sent
