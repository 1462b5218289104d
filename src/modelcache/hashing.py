"""Content ids as the Hub computes them: git blob sha1, LFS sha256, and LFS pointer files."""

from __future__ import annotations

import hashlib
from pathlib import Path

__all__ = ["BlobHasher", "file_digest", "git_blob_sha1", "lfs_pointer"]

CHUNK = 1 << 20


class BlobHasher:
    """Hashes bytes as they stream: ``sha256`` for LFS files, git's ``sha1("blob N\\0" + data)`` else."""

    def __init__(self, size: int, lfs: bool) -> None:
        self.lfs = lfs
        if lfs:
            self._h = hashlib.sha256()
        else:
            self._h = hashlib.sha1(usedforsecurity=False)
            self._h.update(b"blob %d\0" % size)

    def update(self, data: bytes | memoryview) -> None:
        """Feed the next bytes of the file, in order."""
        self._h.update(data)

    def hexdigest(self) -> str:
        """The hex digest so far: the blob id once every byte was fed."""
        return self._h.hexdigest()


def git_blob_sha1(data: bytes) -> str:
    """The git blob id of ``data`` (``sha1("blob N\\0" + data)``)."""
    h = BlobHasher(len(data), lfs=False)
    h.update(data)
    return h.hexdigest()


def file_digest(path: Path, size: int, lfs: bool, limit: int | None = None) -> str:
    """Hash a file (or its first ``limit`` bytes) the way ``BlobHasher`` would while streaming."""
    h = BlobHasher(size, lfs)
    remaining = size if limit is None else limit
    with open(path, "rb") as fh:
        while remaining > 0:
            chunk = fh.read(min(CHUNK, remaining))
            if not chunk:
                break
            h.update(chunk)
            remaining -= len(chunk)
    return h.hexdigest()


def lfs_pointer(sha256: str, size: int) -> bytes:
    """The git-lfs pointer file that stands in git for an LFS object."""
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()
