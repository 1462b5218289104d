"""Card checksums of a cached revision: from its completeness record, and from the bytes on disk.

- ``recorded_card``: from ``trees/<commit>.json`` (what the commit *is*); no file is read but
  the record. This is the checksum a model is registered with.
- ``disk_card``: hashes the card files in ``snapshots/<commit>/`` (what an engine would
  *load*), with the same content ids, and lists what differs from the record.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..cache.importer import is_lfs_path
from ..cache.layout import RepoLayout
from ..cache.records import TreeRecord, read_record
from ..hashing import file_digest
from .checksum import CardDrift, card_checksum, card_diff, card_paths, is_card_file

__all__ = ["Card", "DiskCard", "disk_card", "recorded_card"]


@dataclass(frozen=True)
class Card:
    """The card checksum of one commit of a repo, and the card files it was computed from."""

    repo_id: str
    commit: str
    checksum: str
    files: dict[str, str | None]
    """card path → content id (git sha1, or sha256 for LFS files; None when missing on disk)."""

    def to_dict(self) -> dict[str, object]:
        """JSON-ready dict: ``repo_id``, ``commit``, ``checksum`` and ``files`` (path → content id or None)."""
        return {"repo_id": self.repo_id, "commit": self.commit, "checksum": self.checksum, "files": self.files}


@dataclass(frozen=True)
class DiskCard:
    """The card the files on disk give, the card the record gives (None without one), and what differs."""

    card: Card
    recorded: Card | None
    drift: tuple[CardDrift, ...]

    @property
    def matches(self) -> bool:
        """True when there is a record and the files on disk give its checksum."""
        return self.recorded is not None and self.card.checksum == self.recorded.checksum

    def to_dict(self) -> dict[str, object]:
        """JSON-ready dict: ``disk`` and ``recorded`` checksums (None without a record), ``matches``, ``drift``."""
        return {"disk": self.card.checksum, "recorded": self.recorded.checksum if self.recorded else None,
                "matches": self.matches, "drift": [d.to_dict() for d in self.drift]}


def _record(layout: RepoLayout, commit: str) -> TreeRecord | None:
    return read_record(layout.tree_record(commit), commit)


def recorded_card(layout: RepoLayout, commit: str) -> Card | None:
    """The card as the commit's completeness record describes it; None without a record."""
    record = _record(layout, commit)
    if record is None:
        return None
    files: dict[str, str | None] = {p: record.files[p].etag for p in card_paths(record.files)}
    return Card(layout.repo_id, commit, card_checksum(commit, files), files)


def _content_id(path: Path, lfs: bool) -> str | None:
    try:
        size = os.stat(path).st_size
        return file_digest(path, size, lfs)
    except OSError:
        return None


def _snapshot_card_paths(snapshot: Path) -> list[str]:
    if not snapshot.is_dir():
        return []
    out = []
    for root, dirs, files in os.walk(snapshot):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in files:
            rel = Path(root, name).relative_to(snapshot).as_posix()
            if is_card_file(rel):
                out.append(rel)
    return out


def disk_card(layout: RepoLayout, commit: str) -> DiskCard:
    """Hash the card files as they are in the snapshot now (following its links to the blobs)."""
    record = _record(layout, commit)
    recorded = recorded_card(layout, commit)
    snapshot = layout.snapshot(commit)
    files: dict[str, str | None] = {}
    if record is not None:
        for path in card_paths(record.files):
            files[path] = _content_id(snapshot / path, record.files[path].is_lfs)
    for path in _snapshot_card_paths(snapshot):
        if path not in files:  # a card file nobody recorded: an engine would still load it
            try:
                lfs = is_lfs_path(path, os.stat(snapshot / path).st_size)
            except OSError:
                lfs = False
            files[path] = _content_id(snapshot / path, lfs)
    card = Card(layout.repo_id, commit, card_checksum(commit, files), files)
    drift = tuple(card_diff(recorded.files, files)) if recorded is not None else ()  # type: ignore[arg-type]
    return DiskCard(card, recorded, drift)
