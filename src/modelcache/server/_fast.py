"""The hot path of ``/resolve``: a file answered from memory after three ``stat`` calls.

Resolving a request the slow way walks the repo folder, reads the ref, looks the path up in
the commit's index and resolves the snapshot link (a dozen syscalls and Python objects per
request). A ``Hit`` remembers the outcome, and is trusted again only while what it was built
from is unchanged:

- the ref file (for a branch or tag) has the same inode and mtime — a download that moves
  ``main`` replaces it atomically, which changes both;
- the snapshot link is the same link — ``rm`` of the revision removes it;
- the blob has the same inode, size and mtime — a ``gc``/``rm``/repair removes or replaces it.

A hit skips none of the access rules: the caller still authorizes every request against the
repo's access record (itself stat-validated). Small files (configs, tokenizers) keep their
bytes here, bounded in count and total size, least recently used out first.

Hits are looked up by the request's *raw* path (the bytes before the query): parsing and
validating a path is a pure function of those bytes, so the same bytes always name the same
target, and a hit costs no parsing at all.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from dataclasses import dataclass
from email.utils import formatdate

from ..cache.layout import RepoLayout
from ..protocol import FileEntry
from ._routes import Candidate

__all__ = ["Hit", "ResolveCache", "SMALL_FILE"]

SMALL_FILE = 256 * 1024
"""Files up to this size are answered from memory (one read the first time)."""

Stamp = tuple[int, int, int]


def stamp_of(st: os.stat_result) -> Stamp:
    return (st.st_ino, st.st_size, st.st_mtime_ns)


@dataclass
class Hit:
    """What a resolve found, and the stamps that say whether it still holds."""

    layout: RepoLayout
    cand: Candidate
    commit: str
    entry: FileEntry
    real: str
    """The blob the snapshot link points at (inside the cache, checked when the hit was made)."""
    ref_path: str | None
    ref_stamp: Stamp | None
    link_path: str
    link_stamp: Stamp
    blob_stamp: Stamp
    stat: os.stat_result
    headers: list[tuple[bytes, bytes]]
    """Response headers of a whole-file answer (Content-Length included)."""
    body: bytes | None = None
    """The file's bytes when it is small."""
    wire: bytes = b""
    """``headers`` as they go on the wire (``name: value\r\n`` each), built once."""
    by_commit: bool = False
    """Asked for by commit (immutable), not by a branch or tag a mirror may have to look up."""

    def __post_init__(self) -> None:
        self.wire = b"".join(b"%s: %s\r\n" % kv for kv in self.headers)

    def still_valid(self) -> bool:
        """Three ``stat`` calls: the ref (if any), the snapshot link and the blob are the ones this
        hit was made from."""
        try:
            if self.ref_path is not None and stamp_of(os.stat(self.ref_path)) != self.ref_stamp:
                return False
            if stamp_of(os.lstat(self.link_path)) != self.link_stamp:
                return False
            return stamp_of(os.stat(self.real)) == self.blob_stamp
        except OSError:
            return False


def whole_file_headers(commit: str, entry: FileEntry, st: os.stat_result) -> list[tuple[bytes, bytes]]:
    etag = f'"{entry.etag}"'.encode()
    return [
        (b"x-repo-commit", commit.encode()),
        (b"etag", etag),
        (b"x-linked-etag", etag),
        (b"x-linked-size", str(entry.size).encode()),
        (b"accept-ranges", b"bytes"),
        (b"last-modified", formatdate(st.st_mtime, usegmt=True).encode()),
        (b"content-type", b"application/octet-stream"),
        (b"content-length", str(entry.size).encode()),
    ]


class ResolveCache:
    """Hits by request target, bounded (``max_entries``, ``max_bytes`` of small-file bodies).

    Thread-safe: the event loop reads it, the worker threads of the slow path fill it."""

    def __init__(self, max_entries: int = 8192, max_bytes: int = 64 * 1024 * 1024) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._hits: OrderedDict[bytes, Hit] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key: bytes) -> Hit | None:
        """The hit for the raw path ``key`` if it still holds (dropped otherwise)."""
        hit = self._hits.get(key)
        if hit is None:
            return None
        valid = hit.still_valid()
        with self._lock:
            if self._hits.get(key) is not hit:
                return hit if valid else None
            if not valid:
                self._drop(key)
                return None
            self._hits.move_to_end(key)
        return hit

    def put(self, key: bytes, hit: Hit) -> None:
        """Remember ``hit`` for the raw path ``key`` (a body too large is dropped), evicting the oldest past the limits."""
        if hit.body is not None and len(hit.body) > self.max_bytes // 8:
            hit.body = None
        with self._lock:
            self._drop(key)
            self._hits[key] = hit
            self._bytes += len(hit.body or b"")
            while len(self._hits) > self.max_entries or self._bytes > self.max_bytes:
                self._drop(next(iter(self._hits)))

    def _drop(self, key: bytes) -> None:
        hit = self._hits.pop(key, None)
        if hit is not None:
            self._bytes -= len(hit.body or b"")
