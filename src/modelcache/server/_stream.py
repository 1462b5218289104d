"""Streaming a file to a caller while a mirror fill writes it, last byte held until verified."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable

import anyio
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from ..cache.layout import RepoLayout
from ..protocol import FileEntry
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


def single_range(value: str, size: int) -> tuple[int, int] | None:
    """``bytes=a-b`` / ``a-`` / ``-n`` → ``(start, end)`` (end exclusive) inside ``[0, size)``; None
    for anything else (several ranges, malformed, unsatisfiable: answered from the verified file)."""
    if not value.startswith("bytes=") or "," in value:
        return None
    a, sep, b = value[6:].strip().partition("-")
    if not sep:
        return None
    try:
        if not a:
            n = int(b)
            start, end = (max(0, size - n), size) if n > 0 else (size, size)
        else:
            start = int(a)
            end = min(int(b) + 1, size) if b else size
    except ValueError:
        return None
    if start < 0 or start >= end or start >= size:
        return None
    return start, end


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

    async def body() -> AsyncIterator[bytes]:
        # The file's last byte goes out only after the whole file is verified: no caller ever
        # completes the file — whole, or from ranges — before that. A range that stops short of
        # it streams as the verified frontier passes (a client that assembles ranges, as
        # modelcache and aria2c do, gets its bytes while the mirror fills instead of after).
        size = end
        hold = max(end - 1, start) if end == entry.size else end
        pos = start
        try:
            while pos < hold:
                if fill.resets != resets:
                    raise FillAborted(f"{entry.path}: bytes already sent were discarded upstream-side")
                avail = min(fill.available(), hold)
                if avail > pos:
                    data = await anyio.to_thread.run_sync(os.pread, fd, min(avail - pos, PIECE), pos)
                    if not data:
                        raise FillAborted(f"{entry.path}: short read at {pos}")
                    if fill.resets != resets:  # reset while we read (it counts before it truncates):
                        # these bytes may be holes the next attempt has not written yet
                        raise FillAborted(f"{entry.path}: the fill restarted while this range was read")
                    pos += len(data)
                    yield data
                elif fill.done.is_set() and fill.error is not None:
                    raise FillAborted(f"{entry.path}: upstream fetch failed: {fill.error}")
                else:
                    await anyio.sleep(POLL)
            if end < entry.size:
                return  # (every byte streamed was hashed into the frontier; the file's last is not among them)
            await _wait_done(fill)
            if fill.error is not None or fill.resets != resets:
                raise FillAborted(f"{entry.path}: upstream fetch failed: {fill.error}")
            if size > pos:
                yield await anyio.to_thread.run_sync(os.pread, fd, size - pos, pos)
        finally:
            os.close(fd)

    return StreamingResponse(body(), status_code=status, headers=headers, media_type="application/octet-stream")
