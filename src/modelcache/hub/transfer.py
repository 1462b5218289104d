"""Fetching one blob: resumable, verified while streaming, retried on transient faults.

The blob is assembled in a stable partial file next to its final place. A run killed at any
moment leaves a prefix there; the next run hashes that prefix once and asks only for the rest
(``Range: bytes=N-``). The file is handed back only when its size and hash match the record.
"""

from __future__ import annotations

import os
import random
import time
from urllib.parse import urljoin
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

from ..cache.records import FileEntry
from ..errors import IntegrityError, ProtocolError, TransientError
from ..hashing import CHUNK, BlobHasher
from .client import HubClient, error_for_response

__all__ = ["FetchStats", "Backoff", "fetch_blob"]



@dataclass
class FetchStats:
    bytes_fetched: int = 0
    retries: int = 0
    restarts: int = 0


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with full jitter; ``Retry-After`` wins when the server sends it."""

    base: float = 0.5
    cap: float = 30.0
    attempts: int = 5

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        if retry_after is not None:
            return retry_after
        return random.uniform(0, min(self.cap, self.base * (2**attempt)))


def _hash_prefix(path: Path, hasher: BlobHasher, length: int) -> None:
    remaining = length
    with open(path, "rb") as fh:
        while remaining > 0:
            chunk = fh.read(min(CHUNK, remaining))
            if not chunk:
                raise OSError(f"partial file {path.name} shorter than expected")
            hasher.update(chunk)
            remaining -= len(chunk)


def _content_range_start(value: str | None, size: int) -> int | None:
    """``bytes a-b/N`` → a, when N matches the expected size; None otherwise."""
    if not value or not value.startswith("bytes "):
        return None
    span, _, total = value[6:].partition("/")
    start, _, _ = span.partition("-")
    try:
        if total != "*" and int(total) != size:
            return None
        return int(start)
    except ValueError:
        return None


@dataclass
class _Cursor:
    """How far the partial file is written and verified-so-far (the hash of bytes 0..offset)."""

    offset: int
    hasher: BlobHasher

    def restart(self, fd: int, entry: FileEntry) -> None:
        os.ftruncate(fd, 0)
        self.offset, self.hasher = 0, BlobHasher(entry.size, entry.is_lfs)


def fetch_blob(
    client: HubClient,
    url: str,
    entry: FileEntry,
    partial: Path,
    *,
    repo_id: str = "",
    on_bytes: Callable[[int], None] | None = None,
    backoff: Backoff = Backoff(),
    sleep: Callable[[float], None] = time.sleep,
) -> FetchStats:
    """Make ``partial`` hold exactly the verified bytes of ``entry`` (resuming what is there)."""
    stats = FetchStats()
    partial.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(partial, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        cur = _Cursor(0, BlobHasher(entry.size, entry.is_lfs))
        have = os.fstat(fd).st_size
        if have > entry.size:
            cur.restart(fd, entry)
        elif have:
            _hash_prefix(partial, cur.hasher, have)
            cur.offset = have
        failures = 0
        integrity_failures = 0
        while True:
            if cur.offset == entry.size:
                if cur.hasher.hexdigest() == entry.etag:
                    os.fsync(fd)
                    return stats
                integrity_failures += 1
                cur.restart(fd, entry)
                stats.restarts += 1
                if integrity_failures >= 2:
                    raise IntegrityError(
                        f"{entry.path} from {repo_id}: content does not match its "
                        f"{'sha256' if entry.is_lfs else 'git sha1'} (twice in a row)",
                        "the upstream serves corrupt data; nothing was kept — report it or try another endpoint",
                    )
                continue
            before = cur.offset
            try:
                _stream_once(client, url, entry, fd, cur, stats, repo_id, on_bytes)
            except TransientError as exc:
                failures = 1 if cur.offset > before else failures + 1
                stats.retries += 1
                if failures > backoff.attempts:
                    raise
                sleep(backoff.delay(failures - 1, exc.retry_after))
    finally:
        os.close(fd)


def _stream_once(
    client: HubClient,
    url: str,
    entry: FileEntry,
    fd: int,
    cur: _Cursor,
    stats: FetchStats,
    repo_id: str,
    on_bytes: Callable[[int], None] | None,
) -> None:
    """One GET from ``cur.offset`` to the end; advances ``cur`` as bytes are written."""
    size = entry.size
    headers = {"Accept-Encoding": "identity"}
    asked = cur.offset
    if asked:
        headers["Range"] = f"bytes={asked}-"
    try:
        resp = _open(client, url, headers, entry)
        try:
            if asked and resp.status_code == 200:
                # The server ignored our Range: take the whole body from the start.
                cur.restart(fd, entry)
                stats.restarts += 1
            elif asked and resp.status_code == 206:
                start = _content_range_start(resp.headers.get("Content-Range"), size)
                if start != asked:
                    raise TransientError(
                        f"{entry.path}: the server answered a range other than the one asked "
                        f"(Content-Range {resp.headers.get('Content-Range')!r})",
                        "retrying",
                    )
            elif resp.status_code not in (200, 206) or (not asked and resp.status_code == 206):
                resp.read()
                raise error_for_response(resp, entry.path, repo_id)
            for chunk in resp.iter_raw():  # no re-chunking: a buffer would be lost on a drop
                if cur.offset + len(chunk) > size:
                    cur.restart(fd, entry)
                    stats.restarts += 1
                    raise TransientError(f"{entry.path}: the server sent more bytes than its size {size}", "retrying")
                os.pwrite(fd, chunk, cur.offset)
                cur.hasher.update(chunk)
                cur.offset += len(chunk)
                stats.bytes_fetched += len(chunk)
                if on_bytes:
                    on_bytes(len(chunk))
        finally:
            resp.close()
    except (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError) as exc:
        raise TransientError(
            f"{entry.path}: connection lost at byte {cur.offset} ({type(exc).__name__})", "retrying"
        ) from None
    if cur.offset < size:
        raise TransientError(f"{entry.path}: body ended at byte {cur.offset} of {size}", "retrying")


def _open(client: HubClient, url: str, headers: dict[str, str], entry: FileEntry) -> httpx.Response:
    """Send a streaming GET, following redirects by hand: the token goes only to the endpoint."""
    for _ in range(6):
        req = client.http.build_request("GET", url, headers={**headers, **client.auth_headers(url)})
        resp = client.http.send(req, stream=True)
        if resp.is_redirect and "Location" in resp.headers:
            url = urljoin(url, resp.headers["Location"])
            resp.close()
            continue
        return resp
    raise ProtocolError(f"{entry.path}: too many redirects", "is the endpoint HF-compatible?")
