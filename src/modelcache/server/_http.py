"""HTTP plumbing: Hub-style error answers, absolute URLs from the raw request, pagination cursors."""

from __future__ import annotations

import base64
import binascii
import json
from urllib.parse import parse_qsl, urlencode

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import Message, Receive, Scope, Send

__all__ = ["HttpError", "WithErrorHeaders", "decode_cursor", "encode_cursor", "error_response", "next_page_url"]


class HttpError(Exception):
    """An answer the Hub would give: status, ``X-Error-Code``, message, and maybe ``X-Repo-Commit``."""

    def __init__(self, status: int, code: str, message: str, commit: str | None = None,
                 retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.commit = commit
        self.retry_after = retry_after


def _header_safe(text: str, limit: int = 512) -> str:
    """Header values are latin-1 and one line: escape everything else, cut what is too long."""
    safe = text.encode("ascii", "backslashreplace").decode("ascii")
    safe = "".join(c if 32 <= ord(c) < 127 else " " for c in safe)
    return safe if len(safe) <= limit else safe[: limit - 3] + "..."


def error_response(err: HttpError) -> Response:
    """The Hub-style error answer: JSON ``{"error": message}``, ``X-Error-Code`` and ``X-Error-Message``.

    ``X-Repo-Commit``, ``Retry-After`` and ``Allow`` are added when they apply.
    """
    headers = {"X-Error-Code": err.code, "X-Error-Message": _header_safe(err.message)}
    if err.commit is not None:
        headers["X-Repo-Commit"] = err.commit
    if err.retry_after is not None:
        headers["Retry-After"] = str(max(1, round(err.retry_after)))
    if err.status == 405:
        headers["Allow"] = "GET, HEAD"
    return JSONResponse({"error": err.message}, status_code=err.status, headers=headers)


class WithErrorHeaders:
    """An ASGI wrapper around a response so that the errors it produces itself (a 416 from
    ``FileResponse``, say) still look like every other error: ``X-Error-Code``,
    ``X-Error-Message`` and a JSON body. Other headers (``Content-Range``) are kept."""

    def __init__(self, inner: Response, message_for: dict[int, tuple[str, str]]) -> None:
        self.inner = inner
        self.message_for = message_for

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        replaced: list[bytes] = []

        async def patched(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] in self.message_for:
                code, text = self.message_for[message["status"]]
                body = json.dumps({"error": text}).encode()
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() not in _BODY_HEADERS]
                headers += [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"x-error-code", code.encode()),
                    (b"x-error-message", _header_safe(text).encode()),
                ]
                replaced.append(body)
                message = {**message, "headers": headers}
            elif message["type"] == "http.response.body" and replaced:
                if not replaced[0]:
                    return  # our body is out; drop the rest of the original one
                message = {"type": "http.response.body", "body": replaced[0], "more_body": False}
                replaced[0] = b""
            await send(message)

        await self.inner(scope, receive, patched)


_BODY_HEADERS = (b"content-type", b"content-length")


def encode_cursor(last_path: str) -> str:
    """The pagination cursor after ``last_path`` (URL-safe base64, no padding)."""
    return base64.urlsafe_b64encode(last_path.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> str:
    """The last path a cursor names. Raises ``HttpError`` 400 for an invalid cursor."""
    try:
        padded = (cursor + "=" * (-len(cursor) % 4)).encode("ascii")
        return base64.b64decode(padded, altchars=b"-_", validate=True).decode()
    except (binascii.Error, ValueError):
        raise HttpError(400, "BadRequest", "invalid pagination cursor") from None


def next_page_url(request: Request, cursor: str) -> str:
    """The same URL (raw path kept byte for byte, other query parameters kept) with ``cursor``."""
    scope = request.scope
    host = request.headers.get("host")
    if not host:
        server = scope.get("server") or ("127.0.0.1", 80)
        host = f"{server[0]}:{server[1]}"
    raw_path = scope.get("raw_path") or scope["path"].encode()
    query = [(k, v) for k, v in parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True) if k != "cursor"]
    query.append(("cursor", cursor))
    return f"{scope.get('scheme', 'http')}://{host}{raw_path.decode('latin-1')}?{urlencode(query)}"
