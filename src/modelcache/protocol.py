"""Hub protocol types, shared by ``hub`` (which fetches them) and ``cache`` (which records them).

No I/O here: a ``FileEntry`` is one file of a commit as the Hub's tree API describes it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from .errors import InvalidInput
from .validation import validate_repo_path

__all__ = ["FileEntry"]

_HEX = set("0123456789abcdef")


def _is_hex(value: object, length: int) -> bool:
    return isinstance(value, str) and len(value) == length and set(value) <= _HEX


@dataclass(frozen=True)
class FileEntry:
    """One file of a commit: its path, size, git blob id and, for LFS files, sha256."""

    path: str
    size: int
    blob_id: str
    lfs_sha256: str | None = None

    def __post_init__(self) -> None:
        validate_repo_path(self.path)
        if not isinstance(self.size, int) or isinstance(self.size, bool) or self.size < 0:
            raise InvalidInput(f"invalid size {self.size!r} for {self.path!r}", "the tree listing is malformed")
        if not _is_hex(self.blob_id, 40):
            raise InvalidInput(f"invalid blob id for {self.path!r}", "the tree listing is malformed")
        if self.lfs_sha256 is not None and not _is_hex(self.lfs_sha256, 64):
            raise InvalidInput(f"invalid sha256 for {self.path!r}", "the tree listing is malformed")

    @property
    def is_lfs(self) -> bool:
        """True for an LFS file (it has a sha256, its blob is named by it)."""
        return self.lfs_sha256 is not None

    @property
    def etag(self) -> str:
        """The blob's name in ``blobs/``: sha256 for LFS files, git sha1 otherwise."""
        return self.lfs_sha256 or self.blob_id

    def to_json(self) -> dict[str, object]:
        """The record form: ``{"size", "blob_id"}`` plus ``lfs_sha256``/``lfs_size`` for LFS files."""
        out: dict[str, object] = {"size": self.size, "blob_id": self.blob_id}
        if self.lfs_sha256 is not None:
            out["lfs_sha256"] = self.lfs_sha256
            out["lfs_size"] = self.size
        return out

    @classmethod
    def from_json(cls, path: str, info: Mapping[str, object]) -> FileEntry:
        """The entry of ``path`` from its record form (``to_json``'s shape). Raises ``InvalidInput`` when malformed."""
        size = info.get("lfs_size") if info.get("lfs_sha256") else info.get("size")
        return cls(path=path, size=size, blob_id=info.get("blob_id"), lfs_sha256=info.get("lfs_sha256"))  # type: ignore[arg-type]

    @classmethod
    def from_tree_item(cls, item: Mapping[str, object]) -> FileEntry:
        """From one ``/api/.../tree`` entry of type ``file``."""
        lfs = item.get("lfs")
        if lfs is not None and not isinstance(lfs, Mapping):
            raise InvalidInput("malformed 'lfs' field in tree listing", "the upstream is not HF-compatible")
        path = item.get("path")
        if not isinstance(path, str):
            raise InvalidInput("tree entry without a path", "the upstream is not HF-compatible")
        if lfs:
            return cls(path=path, size=lfs.get("size"), blob_id=item.get("oid"), lfs_sha256=lfs.get("oid"))  # type: ignore[arg-type]
        return cls(path=path, size=item.get("size"), blob_id=item.get("oid"))  # type: ignore[arg-type]

    def to_tree_item(self) -> dict[str, object]:
        """The ``/api/.../tree`` form, as the Hub sends it."""
        item: dict[str, object] = {"type": "file", "oid": self.blob_id, "size": self.size, "path": self.path}
        if self.lfs_sha256:
            item["lfs"] = {"oid": self.lfs_sha256, "size": self.size, "pointerSize": _pointer_size(self)}
        return item


def _pointer_size(entry: FileEntry) -> int:
    from .hashing import lfs_pointer

    return len(lfs_pointer(entry.lfs_sha256 or "", entry.size))
