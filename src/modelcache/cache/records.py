"""The completeness record: huggingface_hub's own ``trees/<commit>.json``.

``{"format_version": 1, "files": {"<path>": {"size", "blob_id", "lfs_sha256"?, "lfs_size"?}}}``.
It lists every file of the commit (not only the ones a profile fetched), so the record says
what "complete" means and huggingface_hub's offline ``snapshot_download`` agrees with ``check``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from ..errors import InvalidInput
from ..protocol import FileEntry
from ..files import atomic_write_bytes

__all__ = ["FORMAT_VERSION", "TreeRecord", "read_record", "write_record"]

FORMAT_VERSION = 1


@dataclass(frozen=True)
class TreeRecord:
    commit: str
    files: Mapping[str, FileEntry]

    @classmethod
    def of(cls, commit: str, entries: Iterable[FileEntry]) -> TreeRecord:
        files: dict[str, FileEntry] = {}
        for e in entries:
            if e.path in files:
                raise InvalidInput(f"duplicate path {e.path!r} in tree listing", "the upstream is not HF-compatible")
            files[e.path] = e
        return cls(commit, dict(sorted(files.items())))

    @property
    def total_size(self) -> int:
        return sum(e.size for e in self.files.values())

    def to_bytes(self) -> bytes:
        data = {"format_version": FORMAT_VERSION, "files": {p: e.to_json() for p, e in self.files.items()}}
        return json.dumps(data, indent=1).encode()


def read_record(path: Path, commit: str) -> TreeRecord | None:
    """The record at ``path``, or None when it is missing, unreadable or of another format."""
    try:
        data = json.loads(path.read_bytes())
        if data.get("format_version") != FORMAT_VERSION:
            return None
        return TreeRecord.of(commit, (FileEntry.from_json(p, info) for p, info in data["files"].items()))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def write_record(path: Path, record: TreeRecord) -> None:
    atomic_write_bytes(path, record.to_bytes())
