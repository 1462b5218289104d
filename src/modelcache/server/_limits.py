"""Connection limits for ``serve``: callers are untrusted, so no client may hold the server.

uvicorn bounds idle keep-alive connections (``timeout_keep_alive``), header size
(``h11_max_incomplete_event_size``) and concurrent requests (``limit_concurrency``, answered
503), but not the time a client may take to *send* its request headers, nor the number of
open connections: a slow client sending a byte now and then, or thousands of idle sockets,
would hold fds until new clients time out. ``GuardedH11Protocol`` adds both:

- a header deadline: a connection that has not sent a complete request head within
  ``header_timeout`` seconds of connecting (or of its previous response) is closed;
- a connection cap: above ``max_connections`` open connections a new one is closed at once
  (kept below the process's fd limit, so the server itself never runs out of fds).
"""

from __future__ import annotations

import asyncio
import resource
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

__all__ = ["GuardedH11Protocol", "default_max_connections", "uvicorn_limits"]


def default_max_connections(wanted: int = 4096) -> int:
    """``wanted``, but well under the soft fd limit (files, the listening socket, threads need fds too)."""
    try:
        soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    except (OSError, ValueError):
        return min(wanted, 512)
    if soft == resource.RLIM_INFINITY:
        return wanted
    return max(16, min(wanted, soft - max(64, soft // 8)))


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a request-head deadline and a cap on open connections."""

    header_timeout: float = 10.0
    max_connections: int = default_max_connections()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.max_connections:
            self.logger.warning("modelcache serve: %d open connections (limit %d): closing a new one",
                                len(self.connections), self.max_connections)
            transport.abort()
            return
        self._arm_head_timer()

    def _arm_head_timer(self) -> None:
        self._cancel_head_timer()
        self._head_timer = self.loop.call_later(self.header_timeout, self._head_timeout)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timeout(self) -> None:
        self._head_timer = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self.transport.abort()  # no complete request head in time: a slow or idle client

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE:
            self._cancel_head_timer()  # a request head arrived: the app's own time now

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        super().connection_lost(exc)


def uvicorn_limits(*, keep_alive: float = 5.0, max_header_bytes: int = 64 * 1024) -> dict[str, object]:
    """Keyword arguments for ``uvicorn.run``/``uvicorn.Config`` that bound what a client can hold.

    ``limit_concurrency`` (503 above it) is the connection cap: uvicorn counts open
    connections there too, so a lower value would refuse requests on idle keep-alive sockets.
    """
    return {
        "http": GuardedH11Protocol,
        "timeout_keep_alive": keep_alive,
        "limit_concurrency": GuardedH11Protocol.max_connections,
        "h11_max_incomplete_event_size": max_header_bytes,
        "timeout_graceful_shutdown": 5,
        "backlog": 1024,
    }
