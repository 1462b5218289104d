"""One request of the transfer engine: a streaming GET with redirects followed by hand, a whole
small body read to its exact size, an error answer drained so its connection can be reused.

No state of the engine here: the engine (``engine.py``) decides what to ask and what to do with
the bytes; this module only speaks to the upstream and says plainly what went wrong.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from urllib.parse import urljoin, urlsplit

import httpx

from ...errors import IntegrityError, ProtocolError, TransientError
from ...protocol import FileEntry
from ..client import HubClient, error_for_response
from ..rawhttp import RawResponse, Unsupported
from .ranges import header_int

__all__ = ["ERROR_BODY_MAX", "Body", "corrupt_twice", "drain_error", "get_whole", "open_stream"]

ERROR_BODY_MAX = 64 * 1024
"""The longest error body read (to keep its connection); a longer one is not read at all."""

MAX_REDIRECTS = 6

Response = httpx.Response | RawResponse
Body = Callable[[Response], Iterator[bytes | memoryview]]
"""How the engine iterates a response's body (its per-thread buffer for raw responses)."""


def drain_error(resp: Response) -> None:
    """Read a short error answer's body so its connection can be reused. The error is judged by
    status and headers alone: a body that is long, or of unknown length (a hostile upstream's
    endless page), is left unread and its connection dropped by ``close``."""
    length = header_int(resp.headers.get("content-length"))
    if length is not None and 0 <= length <= ERROR_BODY_MAX:
        resp.read()


def corrupt_twice(entry: FileEntry, repo_id: str) -> IntegrityError:
    """The error for a file whose content did not match its hash twice in a row."""
    return IntegrityError(
        f"{entry.path} from {repo_id}: content does not match its "
        f"{'sha256' if entry.is_lfs else 'git sha1'} (twice in a row)",
        "the upstream serves corrupt data; nothing was kept — report it or try another endpoint",
    )


def open_stream(client: HubClient, url: str, headers: dict[str, str], entry: FileEntry) -> Response:
    """A streaming GET, redirects followed by hand: the token goes only to the endpoint."""
    for _ in range(MAX_REDIRECTS):
        hdrs = {**headers, **client.auth_headers(url)}
        try:
            resp: Response | None = None
            pool = client.raw_pool_for(url)
            if pool is not None:
                try:
                    resp = pool.get(url, hdrs)
                except Unsupported:
                    resp = None  # e.g. a chunked body: httpx handles it
            if resp is None:
                resp = client.http.send(client.http.build_request("GET", url, headers=hdrs), stream=True)
        except (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError) as exc:
            raise TransientError(f"{entry.path}: {type(exc).__name__} connecting", "retrying") from None
        if resp.is_redirect and "Location" in resp.headers:
            location = resp.headers["Location"]
            resp.close()
            try:
                url = urljoin(url, location)
                urlsplit(url).port  # noqa: B018 - a port out of range or not a number raises here, not later
            except ValueError:
                raise ProtocolError(f"{entry.path}: the endpoint redirected to a URL that does not parse "
                                    f"({location[:100]!r})", "is the endpoint HF-compatible?") from None
            if urlsplit(url).scheme not in ("http", "https"):
                raise ProtocolError(f"{entry.path}: the endpoint redirected to a non-HTTP URL "
                                    f"({urlsplit(url).scheme}:)", "refusing it; is the endpoint trustworthy?")
            continue
        return resp
    raise ProtocolError(f"{entry.path}: too many redirects", "is the endpoint HF-compatible?")


def get_whole(client: HubClient, url: str, entry: FileEntry, repo_id: str, body: Body,
              aborted: Callable[[], bool]) -> bytes | None:
    """One GET of a whole small file: exactly ``entry.size`` bytes, or None when ``aborted()``
    turned true meanwhile. A short, long or cut body is a ``TransientError`` (asked again); an
    error status is the error it means."""
    buf = bytearray()
    try:
        resp = open_stream(client, url, {"Accept-Encoding": "identity"}, entry)
        try:
            if resp.status_code != 200:
                drain_error(resp)
                raise error_for_response(resp, entry.path, repo_id, repo_known=True)
            length = header_int(resp.headers.get("content-length"))
            if length is not None and length != entry.size:
                raise TransientError(f"{entry.path}: the server announced {length} bytes, "
                                     f"not its size {entry.size}", "retrying")
            for data in body(resp):
                if aborted():
                    return None
                if len(buf) + len(data) > entry.size:
                    raise TransientError(f"{entry.path}: the server sent more bytes than its size "
                                         f"{entry.size}", "retrying")
                buf += data
        finally:
            resp.close()
    except (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError) as exc:
        raise TransientError(f"{entry.path}: connection lost at byte {len(buf)} "
                             f"({type(exc).__name__})", "retrying") from None
    if len(buf) < entry.size:
        raise TransientError(f"{entry.path}: body ended at byte {len(buf)} of {entry.size}", "retrying")
    return bytes(buf)
