"""What ``serve``'s HTTP protocol adds to uvicorn's httptools one: hot answers, zero-copy bodies.

``HotAnswers`` asks the app's ``HotPath`` (``_hot``) for a request that is a GET or HEAD
without a body, a ``Range`` or an upgrade, and, when the app has the answer, writes it in one
``write`` from the parser's callbacks: no ASGI scope, request-response cycle or task. Only
when no earlier request of the connection is still being answered (HTTP/1.1 pipelining keeps
its order) and the transport is below its high-water mark (a client that pipelines requests
and reads no answers gets them the ASGI way, which waits for it and stops reading). Keep-alive follows the request like uvicorn's own answers do, and an HTTP/1.0
client that asks for keep-alive gets it (``ab`` and other HTTP/1.0 tools would otherwise open
a connection per request). Everything else goes to the ASGI app untouched.

``ZeroCopyBodies`` offers the app the ASGI ``http.response.zerocopysend`` extension on every
request and sends such a body with ``sendfile`` (``_blob.sendfile_body``): a big blob goes from
the page cache to the socket without passing through Python. Only for a response framed by
``Content-Length``; a file shorter than announced, a client that goes away or stops reading
drops the connection.
"""

from __future__ import annotations

import os
from functools import partial
from typing import Any

from starlette.types import Message, Send

from ._blob import ZERO_COPY, sendfile_body
from ._hot import HotPath

__all__ = ["HotAnswers", "ZeroCopyBodies", "find_hot_path"]

_STATUS_200 = b"HTTP/1.1 200 OK\r\n"
_NOT_HOT = frozenset((b"range", b"content-length", b"transfer-encoding", b"expect", b"upgrade"))
_KEEP_ALIVE_10 = b"connection: keep-alive\r\n"
_CLOSE = b"connection: close\r\n"


def find_hot_path(app: object, depth: int = 4) -> HotPath | None:
    """The ``hot_path`` of ``app`` or of the app it wraps (uvicorn wraps it in middleware), or None."""
    for _ in range(depth):
        hot = getattr(app, "hot_path", None)
        if isinstance(hot, HotPath):
            return hot
        app = getattr(app, "app", None)
        if app is None:
            return None
    return None


class _DefaultHeaders:
    """uvicorn's default headers (``date``, ``server``) as wire bytes, rebuilt when uvicorn renews them
    (a new list every second). One (list, bytes) pair, replaced whole: servers in threads may share it."""

    last: tuple[object, bytes] = (None, b"")

    @classmethod
    def of(cls, headers: list[tuple[bytes, bytes]]) -> bytes:
        source, wire = cls.last
        if headers is not source:
            wire = b"".join(b"%s: %s\r\n" % kv for kv in headers)
            cls.last = (headers, wire)
        return wire


class HotAnswers:
    """A mixin for uvicorn's ``HttpToolsProtocol``: hot answers from the app's ``HotPath``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[call-arg]
        self._hot: HotPath | None = find_hot_path(self.app)  # type: ignore[attr-defined]
        self._hot_reply: bytes | None = None
        self._hot_keep_alive = True

    def on_headers_complete(self) -> None:
        """Answer a hot request here (written once its message is complete); else uvicorn's way."""
        if self._hot is not None and self._take_hot():
            return
        super().on_headers_complete()  # type: ignore[misc]

    def _take_hot(self) -> bool:
        cycle = self.cycle  # type: ignore[attr-defined]
        if (cycle is not None and not cycle.response_complete) or self.pipeline:  # type: ignore[attr-defined]
            return False  # an earlier request is still being answered: answers keep their order
        if self.flow.write_paused:  # type: ignore[attr-defined]
            return False  # the client is not reading: uvicorn's way waits for it and stops reading
        parser = self.parser  # type: ignore[attr-defined]
        method = parser.get_method()
        if method != b"GET" and method != b"HEAD":
            return False
        url: bytes = self.url  # type: ignore[attr-defined]
        if url[:1] != b"/" or b"#" in url:
            return False
        for name, _value in self.headers:  # type: ignore[attr-defined]
            if name in _NOT_HOT:
                return False
        answer = self._hot.answer(method, url.partition(b"?")[0])  # type: ignore[union-attr]
        if answer is None:
            return False
        wire, body = answer
        keep_alive = parser.should_keep_alive()
        if not keep_alive:
            connection = _CLOSE
        elif parser.get_http_version() == "1.0":
            connection = _KEEP_ALIVE_10
        else:
            connection = b""
        self._hot_keep_alive = keep_alive
        defaults = _DefaultHeaders.of(self.server_state.default_headers)  # type: ignore[attr-defined]
        self._hot_reply = b"".join((_STATUS_200, defaults, wire, connection, b"\r\n", body))
        return True

    def on_body(self, body: bytes) -> None:
        if self._hot_reply is None:
            super().on_body(body)  # type: ignore[misc]

    def on_message_complete(self) -> None:
        """Write a hot answer (then close, or wait for the next request like any answer)."""
        reply = self._hot_reply
        if reply is None:
            super().on_message_complete()  # type: ignore[misc]
            return
        self._hot_reply = None
        transport = self.transport  # type: ignore[attr-defined]
        if transport.is_closing():
            return
        transport.write(reply)
        if not self._hot_keep_alive:
            transport.close()
        self.on_response_complete()  # type: ignore[attr-defined]


class ZeroCopyBodies:
    """A mixin for uvicorn's ``HttpToolsProtocol``: the ``http.response.zerocopysend`` extension."""

    write_stall_timeout: float = 60.0

    def on_headers_complete(self) -> None:
        """uvicorn's request-response cycle, with the extension offered and its ``send`` extended."""
        super().on_headers_complete()  # type: ignore[misc]
        cycle = self.cycle  # type: ignore[attr-defined]
        scope = self.scope  # type: ignore[attr-defined]
        if cycle is not None and cycle.scope is scope and self.scheme == "http":  # type: ignore[attr-defined]
            # a new request (not an upgrade), in clear: sendfile would bypass TLS
            scope["extensions"] = {**scope.get("extensions", {}), ZERO_COPY: {}}
            cycle.send = partial(self._send, cycle, cycle.send)

    async def _send(self, cycle: Any, send: Send, message: Message) -> None:
        if message["type"] != ZERO_COPY:
            await send(message)
            return
        if not cycle.response_started or cycle.response_complete or cycle.chunked_encoding is not False:
            raise RuntimeError(f"'{ZERO_COPY}' needs a started response with a Content-Length")
        file = message["file"]
        fd = file if isinstance(file, int) else file.fileno()
        offset = message.get("offset")
        if offset is None:
            offset = os.lseek(fd, 0, os.SEEK_CUR)
        count = message.get("count")
        if count is None:
            count = os.fstat(fd).st_size - offset
        if cycle.scope["method"] != "HEAD" and not cycle.disconnected:
            if count > cycle.expected_content_length:
                raise RuntimeError("Response content longer than Content-Length")
            if cycle.flow.write_paused:
                await cycle.flow.drain()
            try:
                sent = await sendfile_body(self.transport, fd, offset, count,  # type: ignore[attr-defined]
                                           self.write_stall_timeout)
            except EOFError:  # the file is shorter than announced: never a short answer that looks whole
                self.transport.abort()  # type: ignore[attr-defined]
                sent = False
            if not sent:
                cycle.disconnected = True
                return
            cycle.expected_content_length -= count
        await send({"type": "http.response.body", "body": b"", "more_body": message.get("more_body", False)})
