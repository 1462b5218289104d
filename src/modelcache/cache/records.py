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
from ..files import CorruptState, atomic_write_bytes, read_json_state, warn_corrupt

__all__ = ["FORMAT_VERSION", "TreeRecord", "read_record", "write_record"]

FORMAT_VERSION = 1
RECORD_MAX_BYTES = 256 << 20  # ~1M files


@dataclass(frozen=True)
class TreeRecord:
    """Every file of one commit, by path: the completeness record."""

    commit: str
    files: Mapping[str, FileEntry]

    @classmethod
    def of(cls, commit: str, entries: Iterable[FileEntry]) -> TreeRecord:
        """The record of ``commit`` with ``entries``, sorted by path.

        Raises ``InvalidInput`` when a path appears twice.
        """
        files: dict[str, FileEntry] = {}
        for e in entries:
            if e.path in files:
                raise InvalidInput(f"duplicate path {e.path!r} in tree listing", "the upstream is not HF-compatible")
            files[e.path] = e
        return cls(commit, dict(sorted(files.items())))

    @property
    def total_size(self) -> int:
        """The size of every file of the commit, in bytes."""
        return sum(e.size for e in self.files.values())

    def to_bytes(self) -> bytes:
        """The record as HF's ``trees/<commit>.json``: ``{"format_version": 1, "files": {path: entry}}``."""
        data = {"format_version": FORMAT_VERSION, "files": {p: e.to_json() for p, e in self.files.items()}}
        return json.dumps(data, indent=1).encode()


def read_record(path: Path, commit: str) -> TreeRecord | None:
    """The record at ``path``, or None when it is missing, unreadable or of another format.

    Junk (a FIFO or link planted there, bad JSON, wrong types) reads as "no record", with a
    warning naming the file: never a traceback, never a hang.
    """
    hint = f"remove it (`rm -rf '{path}'`) and download the revision again to rebuild it"
    try:
        data = read_json_state(path, max_bytes=RECORD_MAX_BYTES, max_depth=8, hint=hint)
        if data is None or data.get("format_version") != FORMAT_VERSION:  # type: ignore[union-attr]
            return None
        files = data["files"]  # type: ignore[index]
        if not isinstance(files, dict) or not all(isinstance(i, dict) for i in files.values()):
            raise TypeError("'files' is not an object of objects")
        return TreeRecord.of(commit, (FileEntry.from_json(p, info) for p, info in files.items()))
    except CorruptState as exc:
        warn_corrupt(exc)
        return None
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        warn_corrupt(CorruptState(path, f"not a completeness record ({type(exc).__name__})", hint))
        return None


def write_record(path: Path, record: TreeRecord, *, root: Path | None = None, tmp_dir: Path | None = None) -> None:
    """Write ``record`` atomically (temp in ``tmp_dir`` when given; confined to ``root`` when given)."""
    atomic_write_bytes(path, record.to_bytes(), root=root, tmp_dir=tmp_dir)
