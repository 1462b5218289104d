"""Streaming a file to a caller while a mirror fill writes it, last byte held until verified."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable

import anyio
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from ..cache.layout import RepoLayout
from ..protocol import FileEntry
from ._blob import ZERO_COPY, single_range
from ._http import HttpError
from .mirror import Fill, Mirror

__all__ = ["stream_fill"]

PIECE = 1 << 20
POLL = 0.01


class FillAborted(RuntimeError):
    """Raised inside the body: the server closes the connection short of Content-Length."""


async def _wait_done(fill: Fill) -> None:
    while not fill.done.is_set():
        await anyio.sleep(POLL)


async def stream_fill(mirror: Mirror, request: Request, layout: RepoLayout, commit: str, entry: FileEntry,
                      serve_cached: Callable[[], Response]) -> Response:
    etag = f'"{entry.etag}"'
    headers = {"X-Repo-Commit": commit, "ETag": etag, "X-Linked-Etag": etag, "X-Linked-Size": str(entry.size),
               "Accept-Ranges": "bytes", "Content-Length": str(entry.size)}
    if request.method == "HEAD":
        return Response(None, headers=headers, media_type="application/octet-stream")
    if mirror.offline:
        raise HttpError(404, "EntryNotFound", f"{entry.path} of {layout.repo_id} is not cached (mirror is offline)")
    fill = await anyio.to_thread.run_sync(mirror.fill, layout, commit, entry)
    span: tuple[int, int] | None = (0, entry.size)
    status = 200
    if "range" in request.headers:
        span = single_range(request.headers["range"], entry.size)
        if span is None or request.headers.get("if-range"):
            # several ranges, a malformed or conditional one: answered by the verified file
            await _wait_done(fill)
            if fill.error is not None:
                raise HttpError(502, "UpstreamError", f"fetching {entry.path} from upstream failed: {fill.error}")
            return serve_cached()
        status = 206
        headers["Content-Range"] = f"bytes {span[0]}-{span[1] - 1}/{entry.size}"
        headers["Content-Length"] = str(span[1] - span[0])
    start, end = span
    resets = fill.resets
    fd = await anyio.to_thread.run_sync(mirror.partial_fd, layout, fill)
    if fd is None:
        await _wait_done(fill)
        if fill.error is not None:
            raise HttpError(502, "UpstreamError", f"fetching {entry.path} from upstream failed: {fill.error}")
        return serve_cached()

    async def segments() -> AsyncIterator[tuple[int, int]]:
        # The file's last byte goes out only after the whole file is verified: no caller ever
        # completes the file — whole, or from ranges — before that. A range that stops short of
        # it streams as the verified frontier passes (a client that assembles ranges, as
        # modelcache and aria2c do, gets its bytes while the mirror fills instead of after).
        hold = max(end - 1, start) if end == entry.size else end
        pos = start
        while pos < hold:
            if fill.resets != resets:
                raise FillAborted(f"{entry.path}: bytes already sent were discarded upstream-side")
            avail = min(fill.available(), hold)
            if avail > pos:
                yield pos, avail - pos
                pos = avail
            elif fill.done.is_set() and fill.error is not None:
                raise FillAborted(f"{entry.path}: upstream fetch failed: {fill.error}")
            else:
                await anyio.sleep(POLL)
        if end < entry.size:
            return  # (every byte sent was hashed into the frontier; the file's last is not among them)
        await _wait_done(fill)
        if fill.error is not None or fill.resets != resets:
            raise FillAborted(f"{entry.path}: upstream fetch failed: {fill.error}")
        if end > pos:
            yield pos, end - pos

    return _FillResponse(status, headers, fd, segments(), end - start, lambda: fill.resets == resets)


class _FillResponse(Response):
    """The bytes of a fill as ``segments`` releases them: by ``sendfile`` from the writer's inode
    when the server offers the zero-copy extension (the bytes are in the page cache, already
    hashed), else read in 1 MiB pieces in worker threads. The descriptor is closed at the end.

    ``valid()`` says the fill has not restarted since the response began (a restart truncates
    the file: bytes read after it may be holes). It is checked after every read and send, and
    the response's very last byte is read, checked and only then sent: a restart during the
    body can cut the response, never complete it with bytes that were not the file's."""

    def __init__(self, status: int, headers: dict[str, str], fd: int,
                 segments: AsyncIterator[tuple[int, int]], length: int, valid: Callable[[], bool]) -> None:
        super().__init__(None, status_code=status, headers=headers, media_type="application/octet-stream")
        self.fd, self.segments, self.length, self.valid = fd, segments, length, valid

    def _check(self) -> None:
        if not self.valid():
            raise FillAborted("the fill restarted while this response was sent")

    async def _read(self, pos: int, n: int) -> bytes:
        data = await anyio.to_thread.run_sync(os.pread, self.fd, n, pos)
        if not data:
            raise FillAborted(f"short read at {pos}")
        self._check()  # read before any restart began: the file's bytes
        return data

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        fd = self.fd
        try:
            await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
            zero_copy = ZERO_COPY in scope.get("extensions", {})
            sent = 0
            async for pos, count in self.segments:
                end = pos + count
                last = sent + count >= self.length
                if zero_copy:
                    bulk = count - 1 if last else count  # the last byte: read, checked, then sent
                    if bulk > 0:
                        await send({"type": ZERO_COPY, "file": fd, "offset": pos, "count": bulk, "more_body": True})
                        self._check()
                        pos += bulk
                while pos < end:
                    data = await self._read(pos, min(PIECE, end - pos))
                    pos += len(data)
                    await send({"type": "http.response.body", "body": data, "more_body": not last or pos < end})
                sent += count
            if sent < self.length:  # (cannot happen: segments end at the length or raise)
                raise FillAborted("the fill ended short")
            if self.length == 0:
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            os.close(fd)
