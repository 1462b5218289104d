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
    if "range" in request.headers:
        # a range cannot be verified on its own: answer it once the whole file is verified
        await _wait_done(fill)
        if fill.error is not None:
            raise HttpError(502, "UpstreamError", f"fetching {entry.path} from upstream failed: {fill.error}")
        return serve_cached()
    resets = fill.resets
    fd = await anyio.to_thread.run_sync(mirror.partial_fd, layout, fill)
    if fd is None:
        await _wait_done(fill)
        if fill.error is not None:
            raise HttpError(502, "UpstreamError", f"fetching {entry.path} from upstream failed: {fill.error}")
        return serve_cached()

    async def body() -> AsyncIterator[bytes]:
        size = entry.size
        hold = max(size - 1, 0)  # the last byte goes out only after verification
        pos = 0
        try:
            while pos < hold:
                if fill.resets != resets:
                    raise FillAborted(f"{entry.path}: bytes already sent were discarded upstream-side")
                avail = min(fill.available(), hold)
                if avail > pos:
                    data = await anyio.to_thread.run_sync(os.pread, fd, min(avail - pos, PIECE), pos)
                    if not data:
                        raise FillAborted(f"{entry.path}: short read at {pos}")
                    pos += len(data)
                    yield data
                elif fill.done.is_set() and fill.error is not None:
                    raise FillAborted(f"{entry.path}: upstream fetch failed: {fill.error}")
                else:
                    await anyio.sleep(POLL)
            await _wait_done(fill)
            if fill.error is not None or fill.resets != resets:
                raise FillAborted(f"{entry.path}: upstream fetch failed: {fill.error}")
            if size > pos:
                yield await anyio.to_thread.run_sync(os.pread, fd, size - pos, pos)
        finally:
            os.close(fd)

    return StreamingResponse(body(), headers=headers, media_type="application/octet-stream")
