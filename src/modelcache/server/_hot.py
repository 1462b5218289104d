"""Answers to remembered ``/resolve`` files, for the HTTP protocol to write before any ASGI work.

For a GET of a small file or a HEAD of any file the cache already resolved (a ``_fast.Hit``:
headers built, small bodies in memory), the ASGI round trip (scope, request-response cycle,
task, header checks, two writes) costs several times the answer itself. ``HotPath.answer``
gives the protocol (``_protocol``) the bytes to write instead, under exactly the rules the app
applies to a hit:

- the hit is the one remembered for this raw path and still valid (its three ``stat`` calls);
- the repo's access record (stat-validated, failing closed) says it is public: a gated or
  private repo, or an access record that cannot be read, goes the ASGI way, which authorizes
  the caller's token;
- the answer is counted in ``/metrics``, logged with ``--log-json``, and noted as used (GET);
- behind a mirror, only a file asked for by commit: a branch or tag is looked up upstream
  first (TTL-cached), which only the app does.

Everything else returns None and the ASGI app answers: a miss, a GET of a file too big to keep
in memory, a restricted repo. The protocol only asks for GET/HEAD without ``Range`` or a body.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from urllib.parse import unquote

from ..cache.layout import RepoLayout
from ._auth import Gate
from ._fast import ResolveCache
from ._metrics import Metrics, request_log_line

__all__ = ["HotPath"]

log = logging.getLogger("modelcache.server")


class HotPath:
    """Public remembered files by raw path: the header block and body to send, or None."""

    def __init__(self, fast: ResolveCache, gate: Gate, metrics: Metrics,
                 note_use: Callable[[RepoLayout, str], None], log_json: bool, commits_only: bool = False) -> None:
        self.commits_only = commits_only
        """A mirror's: answer only hits asked for by commit."""
        self.fast = fast
        self.gate = gate
        self.metrics = metrics
        self.note_use = note_use
        self.log_json = log_json
        self._ok = metrics.requests.labels("resolve", "200")

    def answer(self, method: bytes, raw_path: bytes) -> tuple[bytes, bytes] | None:
        """``(header lines, body)`` of a 200 to ``method`` (``b"GET"``/``b"HEAD"``) on ``raw_path``
        (the request's path as sent, no query), or None when the ASGI app must answer it.

        The header lines end with ``\\r\\n`` each; the caller adds the status line, its own
        headers (date, connection) and the blank line."""
        hit = self.fast.get(raw_path)
        if hit is None or (self.commits_only and not hit.by_commit):
            return None
        get = method == b"GET"
        if get and hit.body is None:
            return None  # a big file: streamed by the app
        if self.gate.access_of(hit.layout).restricted:
            return None  # the app asks who is calling
        self._ok.inc()
        self.metrics.hits.inc()
        body = b""
        if get:
            body = hit.body  # type: ignore[assignment]
            self.metrics.served_bytes.inc(len(body))
            self.note_use(hit.layout, hit.commit)
        if self.log_json:
            log.info(request_log_line(method.decode(), _path_of(raw_path), 200, "resolve", hit.entry.size,
                                      time.monotonic()))
        return hit.wire, body


def _path_of(raw_path: bytes) -> str:
    """The decoded path, as the ASGI scope's ``path`` would show it."""
    return unquote(raw_path.decode("ascii", "replace"))
