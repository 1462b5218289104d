"""What one commit holds, ready to answer listings and file requests without touching the disk.

A ``CommitIndex`` is built from the completeness record ``trees/<commit>.json`` when there is
one (immutable: cached per commit), or else from a walk of the snapshot folder (a cache
written by an old HF client; kept only for ``walk_ttl`` seconds, since such a snapshot may
still be filling up).
"""

from __future__ import annotations

import bisect
import hashlib
import os
import stat
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from ..cache.layout import RepoLayout
from ..protocol import FileEntry
from ..cache.records import TreeRecord, read_record
from ..errors import InvalidInput
from ..files import open_regular
from ..hashing import BlobHasher, git_blob_sha1, lfs_pointer

__all__ = ["CommitIndex", "IndexCache", "iso_time"]

_HEX = frozenset("0123456789abcdef")


def iso_time(ts: float) -> str:
    """``2024-01-02T03:04:05.678Z``, the Hub's format (what ``parse_datetime`` expects)."""
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _folder_oid(commit: str, path: str) -> str:
    return hashlib.sha1(f"tree\0{commit}\0{path}".encode(), usedforsecurity=False).hexdigest()


@dataclass
class CommitIndex:
    """Files of one commit, plus the sorted listing entries (files and folders) derived from them."""

    commit: str
    files: dict[str, FileEntry]
    from_record: bool
    last_modified: str
    entries: list[dict[str, object]] = field(default_factory=list)  # sorted by path
    keys: list[str] = field(default_factory=list)  # entries' paths, for bisect
    children: dict[str, list[int]] = field(default_factory=dict)  # folder ("" = root) → entry indexes

    @classmethod
    def build(cls, commit: str, files: dict[str, FileEntry], from_record: bool, mtime: float) -> CommitIndex:
        """The index of ``commit``'s ``files``: every file and folder as a tree item, sorted by path."""
        index = cls(commit, files, from_record, iso_time(mtime))
        items: dict[str, dict[str, object]] = {}
        for path, entry in files.items():
            items[path] = entry.to_tree_item()
            parts = path.split("/")
            for i in range(1, len(parts)):
                folder = "/".join(parts[:i])
                if folder not in items:
                    items[folder] = {"type": "directory", "oid": _folder_oid(commit, folder), "path": folder}
        for n, path in enumerate(sorted(items)):
            index.entries.append(items[path])
            index.keys.append(path)
            parent = path.rpartition("/")[0]
            index.children.setdefault(parent, []).append(n)
        return index

    def is_folder(self, path: str) -> bool:
        """True when ``path`` is a folder of the commit (``""``: the root)."""
        return path == "" or path in self.children

    def listing(self, path: str, recursive: bool, after: str | None, limit: int) -> tuple[list[dict[str, object]], bool]:
        """Up to ``limit`` entries under ``path`` whose path sorts after ``after``; and whether more remain."""
        if recursive:
            prefix = f"{path}/" if path else ""
            start = bisect.bisect_left(self.keys, prefix)
            if after is not None:
                start = max(start, bisect.bisect_right(self.keys, after))
            end = bisect.bisect_left(self.keys, prefix + "\U0010ffff") if prefix else len(self.keys)
            page = self.entries[start : min(end, start + limit)]
            return page, start + limit < end
        idx = self.children.get(path, [])
        start = 0
        if after is not None:
            start = bisect.bisect_right([self.keys[i] for i in idx], after)
        chosen = idx[start : start + limit]
        return [self.entries[i] for i in chosen], start + limit < len(idx)


def _walk_entry(real_root: str, full: Path, rel: str) -> FileEntry | None:
    """Metadata of one snapshot file from the blob its link names; None to leave it out."""
    try:
        real = os.path.realpath(full)
        if os.path.commonpath([real_root, real]) != real_root:
            return None  # points outside the cache: never listed, never served
        st = os.stat(real)
        if not stat.S_ISREG(st.st_mode):
            return None  # a FIFO, device or folder: never listed, never opened
        size = st.st_size
        target = os.readlink(full) if full.is_symlink() else ""
    except (OSError, ValueError):
        return None
    etag = os.path.basename(target)
    try:
        if len(etag) == 64 and set(etag) <= _HEX:
            return FileEntry(rel, size, git_blob_sha1(lfs_pointer(etag, size)), etag)
        if len(etag) == 40 and set(etag) <= _HEX:
            return FileEntry(rel, size, etag)
        # A copied-in file (no symlinks): its id is only known by hashing it, once (cached).
        return FileEntry(rel, size, _content_sha1(real, size))
    except (InvalidInput, OSError):
        return None


_SHA1_CACHE: dict[tuple[str, int, int], str] = {}


def _content_sha1(real: str, size: int) -> str:
    fd = open_regular(real)  # O_NOFOLLOW|O_NONBLOCK: a FIFO swapped in never blocks
    try:
        st = os.fstat(fd)
        key = (real, size, st.st_mtime_ns)
        if key not in _SHA1_CACHE:
            if len(_SHA1_CACHE) > 4096:
                _SHA1_CACHE.clear()
            hasher = BlobHasher(size, lfs=False)
            offset = 0
            while offset < size and (chunk := os.pread(fd, min(1 << 20, size - offset), offset)):
                hasher.update(chunk)
                offset += len(chunk)
            _SHA1_CACHE[key] = hasher.hexdigest()
        return _SHA1_CACHE[key]
    finally:
        os.close(fd)


def walk_snapshot(snapshot: Path, real_root: str) -> dict[str, FileEntry]:
    files: dict[str, FileEntry] = {}
    for root, dirs, names in os.walk(snapshot, followlinks=False):
        dirs.sort()
        base = Path(root)
        for name in sorted(names):
            full = base / name
            rel = full.relative_to(snapshot).as_posix()
            entry = _walk_entry(real_root, full, rel)
            if entry is not None:
                files[rel] = entry
    return files


class IndexCache:
    """Commit indexes built from records, kept (LRU, bounded); walked ones for a few seconds."""

    def __init__(self, cache_dir: Path, max_entries: int = 64, walk_ttl: float = 2.0) -> None:
        self.real_root = os.path.realpath(cache_dir)
        self.max_entries = max_entries
        self.walk_ttl = walk_ttl
        self._items: OrderedDict[tuple[str, str], CommitIndex] = OrderedDict()
        self._walked: dict[tuple[str, str], tuple[float, CommitIndex]] = {}
        self._lock = threading.Lock()

    def get(self, layout: RepoLayout, commit: str) -> CommitIndex | None:
        """The index of ``commit``, or None when the cache has neither a record nor a snapshot of it."""
        key = (str(layout.folder), commit)
        with self._lock:
            hit = self._items.get(key)
            if hit is not None:
                self._items.move_to_end(key)
                return hit
        record_path = layout.tree_record(commit)
        record: TreeRecord | None = read_record(record_path, commit)
        if record is not None:
            try:
                mtime = record_path.stat().st_mtime
            except OSError:
                mtime = 0.0
            index = CommitIndex.build(commit, dict(record.files), True, mtime)
            with self._lock:
                self._items[key] = index
                while len(self._items) > self.max_entries:
                    self._items.popitem(last=False)
            return index
        now = time.monotonic()
        walked = self._walked.get(key)
        if walked is not None and now - walked[0] < self.walk_ttl:
            return walked[1]
        snapshot = layout.snapshot(commit)
        try:
            mtime = snapshot.stat().st_mtime
        except OSError:
            return None
        index = CommitIndex.build(commit, walk_snapshot(snapshot, self.real_root), False, mtime)
        with self._lock:
            if len(self._walked) >= self.max_entries:
                self._walked.clear()
            self._walked[key] = (now, index)
        return index
