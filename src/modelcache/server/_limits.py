"""Connection limits for ``serve``: callers are untrusted, so no client may hold the server.

uvicorn bounds idle keep-alive connections (``timeout_keep_alive``), header size
(``h11_max_incomplete_event_size``) and concurrent requests (``limit_concurrency``, answered
503), but not the time a client may take to *send* its request headers, nor the number of
open connections: a slow client sending a byte now and then, or thousands of idle sockets,
would hold fds until new clients time out. ``GuardedH11Protocol`` adds both:

- a header deadline: a connection that has not sent a complete request head within
  ``header_timeout`` seconds of connecting (or of its previous response) is closed;
- a connection cap: above ``max_connections`` open connections a new one is closed at once
  (kept below the process's fd limit, so the server itself never runs out of fds);
- a write-stall deadline: a client that stops reading its response (a "slow read": the
  socket's buffers stay full) is dropped after ``write_stall_timeout`` seconds without progress.
"""

from __future__ import annotations

import asyncio
import resource
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

__all__ = ["GuardedH11Protocol", "GuardedHttpToolsProtocol", "HeadGuard", "default_max_connections", "uvicorn_limits"]


def default_max_connections(wanted: int = 4096) -> int:
    """``wanted``, but well under the soft fd limit (files, the listening socket, threads need fds too)."""
    try:
        soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    except (OSError, ValueError):
        return min(wanted, 512)
    if soft == resource.RLIM_INFINITY:
        return wanted
    return max(16, min(wanted, soft - max(64, soft // 8)))


class HeadGuard:
    """A request-head deadline and a cap on open connections, for any uvicorn HTTP protocol.

    Configured on this class (``HeadGuard.header_timeout = …``), seen by every protocol below."""

    header_timeout: float = 10.0
    max_connections: int = default_max_connections()
    max_header_bytes: int = 64 * 1024
    write_stall_timeout: float = 60.0
    """Seconds a response may make no progress (the client reads nothing) before the connection goes."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[call-arg]
        self._head_timer: asyncio.TimerHandle | None = None
        self._stall_timer: asyncio.TimerHandle | None = None
        self._head_bytes = 0

    def pause_writing(self) -> None:
        """The transport's buffer is full: the client is not reading. Give it a deadline."""
        super().pause_writing()  # type: ignore[misc]
        if self._stall_timer is None:
            self._stall_timer = self.loop.call_later(self.write_stall_timeout, self._stalled)  # type: ignore[attr-defined]

    def resume_writing(self) -> None:
        self._cancel_stall_timer()
        super().resume_writing()  # type: ignore[misc]

    def _cancel_stall_timer(self) -> None:
        if self._stall_timer is not None:
            self._stall_timer.cancel()
            self._stall_timer = None

    def _stalled(self) -> None:
        self._stall_timer = None
        if not self.transport.is_closing():  # type: ignore[attr-defined]
            self.transport.abort()  # type: ignore[attr-defined]  # a slow reader holds nothing for ever

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Abort the new connection when over ``max_connections``; else start its request-head timer."""
        super().connection_made(transport)  # type: ignore[misc]
        if len(self.connections) > self.max_connections:  # type: ignore[attr-defined]
            self.logger.warning("modelcache serve: %d open connections (limit %d): closing a new one",  # type: ignore[attr-defined]
                                len(self.connections), self.max_connections)  # type: ignore[attr-defined]
            transport.abort()
            return
        self._arm_head_timer()

    def _arm_head_timer(self) -> None:
        self._cancel_head_timer()
        self._head_bytes = 0
        self._head_timer = self.loop.call_later(self.header_timeout, self._head_timeout)  # type: ignore[attr-defined]

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timeout(self) -> None:
        self._head_timer = None
        if self._waiting_for_head() and not self.transport.is_closing():  # type: ignore[attr-defined]
            self.transport.abort()  # type: ignore[attr-defined]  # no complete request head in time

    def _waiting_for_head(self) -> bool:
        return True

    def on_response_complete(self) -> None:
        """Re-arm the head timer for the next request on a kept-alive connection."""
        super().on_response_complete()  # type: ignore[misc]
        if not self.transport.is_closing():  # type: ignore[attr-defined]
            self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        """Cancel the head timer and let the protocol clean up."""
        self._cancel_head_timer()
        self._cancel_stall_timer()
        super().connection_lost(exc)  # type: ignore[misc]


class GuardedH11Protocol(HeadGuard, H11Protocol):
    """uvicorn's h11 protocol, guarded (pure Python: the fallback when httptools is missing)."""

    def _waiting_for_head(self) -> bool:
        return self.conn.their_state is h11.IDLE

    def data_received(self, data: bytes) -> None:
        """Feed the bytes to h11; once a request head is in, stop its head timer."""
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE:
            self._cancel_head_timer()  # a request head arrived: the app's own time now


try:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as _HttpTools
except ImportError:  # httptools not installed: h11 it is
    _HttpTools = None

if _HttpTools is not None:
    from ._protocol import HotAnswers, ZeroCopyBodies

    class GuardedHttpToolsProtocol(HeadGuard, HotAnswers, ZeroCopyBodies, _HttpTools):  # type: ignore[misc, valid-type]
        """uvicorn's httptools protocol (a C parser: less CPU per request than h11), guarded; a
        request head larger than ``max_header_bytes`` closes the connection. Remembered public
        files are answered by the protocol itself (``_protocol.HotAnswers``), big file bodies
        sent with ``sendfile`` (``_protocol.ZeroCopyBodies``)."""

        def data_received(self, data: bytes) -> None:
            if self._head_timer is not None:
                self._head_bytes += len(data)
                if self._head_bytes > self.max_header_bytes:
                    self.transport.abort()
                    return
            super().data_received(data)

        def on_headers_complete(self) -> None:
            self._cancel_head_timer()
            super().on_headers_complete()

        def _waiting_for_head(self) -> bool:
            # not while a request is answered or queued behind one (pipelined: its head is in;
            # the timer re-armed when the answer before it completed is not its deadline)
            return (self.cycle is None or self.cycle.response_complete) and not self.pipeline
else:  # pragma: no cover
    GuardedHttpToolsProtocol = None  # type: ignore[assignment, misc]


def uvicorn_limits(*, keep_alive: float = 5.0, max_header_bytes: int = 64 * 1024) -> dict[str, object]:
    """Keyword arguments for ``uvicorn.run``/``uvicorn.Config`` that bound what a client can hold.

    ``limit_concurrency`` (503 above it) is the connection cap: uvicorn counts open
    connections there too, so a lower value would refuse requests on idle keep-alive sockets.
    """
    HeadGuard.max_header_bytes = max_header_bytes
    return {
        "http": GuardedHttpToolsProtocol or GuardedH11Protocol,
        "timeout_keep_alive": keep_alive,
        "limit_concurrency": HeadGuard.max_connections,
        "h11_max_incomplete_event_size": max_header_bytes,
        "timeout_graceful_shutdown": 5,
        "backlog": 1024,
    }
