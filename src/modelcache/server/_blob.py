"""Whole big files to a caller: from a verified descriptor, by ``sendfile`` when the server can.

``BlobResponse`` answers a GET of a remembered file too big to keep in memory, or one range of
any remembered file (``single_range``: ``bytes=a-b``, ``bytes=a-``, ``bytes=-n``; anything else,
``If-Range`` and unsatisfiable ranges are left to Starlette's ``FileResponse``). It opens the
blob once, without following a link, and sends it only if the descriptor is the very file the
hit was validated against (device, inode, size, mtime): a blob swapped for a link or another
file after the hit's ``stat`` calls is never sent. When the server offers the ASGI
``http.response.zerocopysend`` extension (``_protocol.ZeroCopyBodies``), the bytes go from the
page cache to the socket with ``sendfile`` (one copy fewer than read + write, and no Python
buffer); otherwise they are read in 1 MiB pieces in worker threads.

``sendfile_body`` is the server side of that extension: ``sendfile`` calls in worker threads
(a cold page cache reads the disk: never on the event loop); a full socket that drains within
``DRAIN_WAIT_MS`` is waited for in that thread (a fast reader costs no trip through the event
loop per socket buffer: ~10% less server CPU per byte under wrk), else its writability is
awaited on the event loop (a slow reader holds no thread); a client that reads nothing for
``stall_timeout`` seconds is dropped. A send cancelled while its thread is in ``sendfile`` (a
server stopping) waits for that call to return before the socket is put back and closed.

On Linux the socket is set up for the bulk of the body (``_BulkSocket``), as nginx's
``tcp_nopush`` does: ``TCP_CORK`` makes every segment full-size (the kernel and the reader handle
fewer, bigger packets; uncorking at the end sends the last partial one at once), and, with the
transport's reading paused so that nothing on the event loop touches the socket meanwhile (the
response head was flushed first), each worker-thread hop is *one* blocking ``sendfile`` whose
every wait for room is bounded by ``SO_SNDTIMEO`` = ``DRAIN_WAIT_MS``: the kernel refills the
socket as the reader drains it, without a ``poll``, a wake-up and a GIL hand-over per refill. Such
a wait ends as soon as *some* room is freed, so a hop that has lasted ``DRAIN_WAIT_MS`` is made
to stop at its next wait (the event loop sets ``O_NONBLOCK`` under it): a reader that does not
keep the socket drained is handed back to the event loop, as above, instead of holding a worker
thread for the whole hop at a few MB/s. The socket is blocking only inside that call (its
``O_NONBLOCK`` is restored before the thread returns) and everything is put back before the next
response. 4 × 256 MiB under ``wrk -c32`` on 2 cores: ~2,000 → ~2,250 MB/s median (nginx
~1,900-2,050 in the same rounds).
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import re
import select
import socket
import stat
import struct
import sys
import threading
from collections.abc import Callable

import anyio
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from ._fast import Hit
from ._http import HttpError, error_response

__all__ = ["ZERO_COPY", "BlobResponse", "open_verified", "sendfile_body", "single_range"]

ZERO_COPY = "http.response.zerocopysend"
"""The ASGI extension (and message type) for sending a file descriptor's bytes."""

PIECE = 1 << 20
"""Bytes per read when the server has no zero-copy send."""
SENDFILE_MAX = 64 << 20
"""Most bytes one worker-thread hop sends before handing back to the event loop."""
DRAIN_WAIT_MS = 20
"""A full socket that drains within this long is waited for in the sending thread (a fast reader:
no trip through the event loop per socket buffer); one that does not is handed back to the event
loop, so a slow reader holds no thread."""


def open_verified(hit: Hit) -> int | None:
    """A read-only descriptor of ``hit``'s blob, or None when the path no longer is that blob
    (link, FIFO, other inode, size or mtime): the caller then answers as for a file not here."""
    try:
        fd = os.open(hit.real, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
    except OSError:
        os.close(fd)
        return None
    want = hit.stat
    if (not stat.S_ISREG(st.st_mode) or (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
            != (want.st_dev, want.st_ino, want.st_size, want.st_mtime_ns)):
        os.close(fd)
        return None
    return fd


_RANGE = re.compile(r"bytes=(?:([0-9]{1,19})-([0-9]{0,19})|-([0-9]{1,19}))")


def single_range(header: str, size: int) -> tuple[int, int] | None:
    """``(start, end)`` (end excluded) of a satisfiable one-range ``Range`` header, computed as
    Starlette's ``FileResponse`` does; None for anything else (which ``FileResponse`` answers)."""
    m = _RANGE.fullmatch(header)
    if m is None:
        return None
    first, last, suffix = m.groups()
    if suffix is not None:
        start, end = max(size - int(suffix), 0), size
    else:
        start = int(first)
        end = int(last) + 1 if last and int(last) < size else size
    return (start, end) if 0 <= start < end <= size else None


class BlobResponse(Response):
    """A 200 with the whole of ``hit``'s blob, or a 206 with ``part`` of it (GET): zero-copy when
    the server offers it."""

    def __init__(self, hit: Hit, part: tuple[int, int] | None = None) -> None:
        self.hit = hit
        self.part = part or (0, hit.entry.size)
        self.background = None
        self.body = b""
        if part is None:
            self.status_code = 200
            self.raw_headers = hit.headers
        else:
            start, end = part
            self.status_code = 206
            self.raw_headers = [kv for kv in hit.headers if kv[0] != b"content-length"] + [
                (b"content-range", b"bytes %d-%d/%d" % (start, end - 1, hit.entry.size)),
                (b"content-length", b"%d" % (end - start)),
            ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        hit = self.hit
        fd = await anyio.to_thread.run_sync(open_verified, hit)
        if fd is None:
            changed = HttpError(404, "EntryNotFound", f"{hit.entry.path} of {hit.layout.repo_id} changed in the cache "
                                                      "while being served: ask again")
            await error_response(changed)(scope, receive, send)
            return
        try:
            await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
            pos, end = self.part
            if scope.get("method") == "HEAD":
                await send({"type": "http.response.body", "body": b"", "more_body": False})
                return
            if ZERO_COPY in scope.get("extensions", {}):
                await send({"type": ZERO_COPY, "file": fd, "offset": pos, "count": end - pos, "more_body": False})
                return
            while pos < end:
                data = await anyio.to_thread.run_sync(os.pread, fd, min(PIECE, end - pos), pos)
                if not data:
                    raise RuntimeError(f"{hit.real} is shorter than its {hit.entry.size} bytes")  # the connection is dropped
                pos += len(data)
                await send({"type": "http.response.body", "body": data, "more_body": pos < end})
        finally:
            os.close(fd)


_LINUX = sys.platform.startswith("linux")
_DRAIN_TIMEVAL = struct.pack("@ll", 0, DRAIN_WAIT_MS * 1000)
_NO_TIMEVAL = struct.pack("@ll", 0, 0)
_READ_MAX = 256 * 1024
"""What a transport reads at once (uvloop's buffer, asyncio's ``max_size``)."""


class _BulkSocket:
    """The socket of one zero-copy body, set up for bulk sending (see the module docstring) and
    put back by ``close``. ``sock_fd`` is our duplicate of the transport's socket; it is closed."""

    def __init__(self, transport: asyncio.Transport, sock_fd: int) -> None:
        self.transport = transport
        self.sk = socket.socket(fileno=sock_fd)  # to set options; the duplicate is closed with it
        self.corked = self.blocking = False
        if not _LINUX:
            return
        try:
            self.sk.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 1)
            self.corked = True
        except (OSError, AttributeError):  # not a TCP socket
            pass
        if transport.is_reading():  # paused by someone else: they may resume it at any time, so no
            try:
                self.sk.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, _DRAIN_TIMEVAL)
            except OSError:
                return
            transport.pause_reading()
            self.blocking = True
        self.timer: asyncio.TimerHandle | None = None

    def fileno(self) -> int:
        return self.sk.fileno()

    def watch_hop(self, loop: asyncio.AbstractEventLoop) -> None:
        """A blocking hop starts: from ``DRAIN_WAIT_MS`` on, its ``sendfile`` stops at its next wait
        for room (the socket is made non-blocking under it; again every ``DRAIN_WAIT_MS``, should
        the thread have cleared the flag after). A wait ends as soon as the reader frees *some*
        room, so without this a reader at a few MB/s kept the thread for the whole hop."""
        self.timer = loop.call_later(DRAIN_WAIT_MS / 1000, self._stop_waiting, loop)

    def _stop_waiting(self, loop: asyncio.AbstractEventLoop) -> None:
        try:
            flags = fcntl.fcntl(self.sk.fileno(), fcntl.F_GETFL)
            fcntl.fcntl(self.sk.fileno(), fcntl.F_SETFL, flags | os.O_NONBLOCK)
        except OSError:
            return
        self.timer = loop.call_later(DRAIN_WAIT_MS / 1000, self._stop_waiting, loop)

    def hop_done(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def close(self) -> None:
        """Put the socket back; what the client sent while reading was paused goes to the protocol
        now, as one read of the transport's would (the answer may close the connection next, and
        a socket closed with unread bytes is reset, the end of the body dropped on its way)."""
        self.hop_done()
        pending = b""
        try:
            if self.corked:
                self.sk.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 0)  # sends the last partial segment now
            if self.blocking:
                self.sk.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, _NO_TIMEVAL)
                pending = self.sk.recv(_READ_MAX, socket.MSG_DONTWAIT)
        except OSError:  # the client went away, or sent nothing (BlockingIOError)
            pass
        self.sk.close()
        if self.blocking and not self.transport.is_closing():
            self.transport.resume_reading()
            if pending:  # (an end of stream is left for the transport to see)
                self.transport.get_protocol().data_received(pending)  # type: ignore[attr-defined]


def _sendfile_blocking(sock_fd: int, fd: int, offset: int, count: int) -> tuple[int, bool]:
    """``_sendfile_some`` as one blocking ``sendfile``: the kernel waits for room (at most
    ``DRAIN_WAIT_MS`` per wait, ``SO_SNDTIMEO``) and refills the socket as the reader drains it,
    until the event loop makes the socket non-blocking again (``_BulkSocket.watch_hop``). The
    socket is blocking only during the call."""
    limit = min(count, SENDFILE_MAX)
    flags = fcntl.fcntl(sock_fd, fcntl.F_GETFL)
    fcntl.fcntl(sock_fd, fcntl.F_SETFL, flags & ~os.O_NONBLOCK)
    try:
        n = os.sendfile(sock_fd, fd, offset, limit)
    except BlockingIOError:  # no room for DRAIN_WAIT_MS: a slow reader, the event loop waits for it
        return 0, True
    finally:
        fcntl.fcntl(sock_fd, fcntl.F_SETFL, flags)
    if n == 0:
        raise EOFError(f"file ended {count} bytes early")
    return n, n < limit


def _sendfile_some(sock_fd: int, fd: int, offset: int, count: int) -> tuple[int, bool]:
    """(bytes ``sendfile`` moved, whether the socket is full now). Raises ``OSError`` for a gone
    client, ``EOFError`` when the file ends early."""
    sent = 0
    limit = min(count, SENDFILE_MAX)
    poller: select.poll | None = None
    while sent < limit:
        try:
            n = os.sendfile(sock_fd, fd, offset + sent, limit - sent)
        except BlockingIOError:
            if poller is None:
                poller = select.poll()
                poller.register(sock_fd, select.POLLOUT)
            if not poller.poll(DRAIN_WAIT_MS):
                return sent, True  # a slow reader: the event loop waits for it, not this thread
            continue
        except InterruptedError:
            continue
        if n == 0:
            raise EOFError(f"file ended {count - sent} bytes early")
        sent += n
    return sent, False


async def _hop(send: Callable[[int, int, int, int], tuple[int, bool]], sock_fd: int, fd: int, offset: int,
               count: int) -> tuple[int, bool]:
    """``send(sock_fd, fd, offset, count)`` in a worker thread, as ``anyio.to_thread.run_sync``, but
    never abandoned: when the task is cancelled meanwhile (uvicorn's shutdown past its grace
    period, ``asyncio.run``'s last sweep: ``Task.cancel``, which anyio's shielding does not hold
    off) the cancellation goes on only once the call has returned, so the socket and the file
    stay open, and set up as the call needs them (each wait bounded by ``SO_SNDTIMEO``), until
    then: at most ``DRAIN_WAIT_MS`` after the client stops reading, or ``SENDFILE_MAX`` bytes. A
    call not started yet never starts."""
    loop = asyncio.get_running_loop()
    ended = loop.create_future()  # a plain future: nothing cancels it
    lock = threading.Lock()
    state = {"started": False, "ended": False, "gone": False}

    def call() -> tuple[int, bool]:
        with lock:
            if state["gone"]:
                return 0, True
            state["started"] = True
        try:
            return send(sock_fd, fd, offset, count)
        finally:
            with lock:
                state["ended"] = True
                gone = state["gone"]
            if gone:  # (only then: no extra wake-up of the event loop per hop)
                try:
                    loop.call_soon_threadsafe(lambda: ended.done() or ended.set_result(None))
                except RuntimeError:  # the loop is closed
                    pass

    try:
        return await anyio.to_thread.run_sync(call)
    except asyncio.CancelledError:
        with lock:
            state["gone"] = True
            running = state["started"] and not state["ended"]
        while running and not ended.done():
            try:
                await asyncio.wait((ended,))
            except asyncio.CancelledError:  # (cancelled again: still the same call to wait for)
                pass
        raise


async def _writable(loop: asyncio.AbstractEventLoop, sock_fd: int, timeout: float) -> bool:
    """True once ``sock_fd`` can take more bytes, False after ``timeout`` seconds without."""
    ready = loop.create_future()

    def done(result: bool) -> None:
        if not ready.done():
            ready.set_result(result)

    loop.add_writer(sock_fd, done, True)
    timer = loop.call_later(timeout, done, False)
    try:
        return await ready
    finally:
        timer.cancel()
        loop.remove_writer(sock_fd)


async def _until_writable(loop: asyncio.AbstractEventLoop, transport: asyncio.Transport, sock_fd: int,
                          stall_timeout: float) -> bool:
    """Wait for room in the socket, a second at a time (a transport closed meanwhile ends it);
    False, the transport aborted, when the client read nothing for ``stall_timeout`` seconds."""
    deadline = loop.time() + stall_timeout
    while not await _writable(loop, sock_fd, max(0.0, min(1.0, deadline - loop.time()))):
        if transport.is_closing():
            return False
        if loop.time() >= deadline:
            transport.abort()  # the client stopped reading
            return False
    return True


async def sendfile_body(transport: asyncio.Transport, fd: int, offset: int, count: int,
                        stall_timeout: float) -> bool:
    """Send ``count`` bytes of ``fd`` from ``offset`` on ``transport``'s socket, after what the
    transport has buffered. False when the client went away or stalled (the transport is then
    aborted); ``EOFError`` when the file is shorter than ``count``."""
    loop = asyncio.get_running_loop()
    sock = transport.get_extra_info("socket")
    if sock is None:
        raise RuntimeError("zero-copy send needs a socket transport")
    deadline = loop.time() + stall_timeout
    while transport.get_write_buffer_size():  # the response head, normally written at once
        if transport.is_closing() or loop.time() > deadline:
            transport.abort()
            return False
        await asyncio.sleep(0.001)
    bulk = _BulkSocket(transport, os.dup(sock.fileno()))  # ours to poll and to keep open while a thread sends
    send = _sendfile_blocking if bulk.blocking else _sendfile_some
    try:
        while count > 0:
            if transport.is_closing():
                return False
            if bulk.blocking:
                bulk.watch_hop(loop)
            try:
                n, full = await _hop(send, bulk.fileno(), fd, offset, count)
            except OSError:  # the client went away (EPIPE, ECONNRESET)
                transport.abort()
                return False
            finally:
                bulk.hop_done()
            offset += n
            count -= n
            if count and full and not await _until_writable(loop, transport, bulk.fileno(), stall_timeout):
                return False
        return True
    finally:
        bulk.close()
