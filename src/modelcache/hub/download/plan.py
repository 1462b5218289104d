"""Transfer planning: which files of a commit to fetch, link or leave alone. Pure, no I/O.

The service layer looks at the disk (``LocalState`` per file) and hands it here; the plan is
plain data that tests check without servers.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from ...protocol import FileEntry

__all__ = ["FilePlan", "LocalState", "TransferPlan", "plan_transfer"]


@dataclass(frozen=True)
class LocalState:
    """What the disk holds for one file: a snapshot entry of the right size, the blob."""

    snapshot_ok: bool = False
    blob_size: int | None = None


@dataclass(frozen=True)
class FilePlan:
    """What to do with one file of the commit: ``present``, ``link`` or ``fetch``."""

    entry: FileEntry
    action: str
    """``present`` (nothing to do), ``link`` (blob is there, make the snapshot link), ``fetch``."""

    @property
    def bytes_to_fetch(self) -> int:
        """The file's size when it must be fetched, else 0."""
        return self.entry.size if self.action == "fetch" else 0


@dataclass(frozen=True)
class TransferPlan:
    """The plan of every file of one commit (see ``plan_transfer``)."""

    files: tuple[FilePlan, ...]

    @property
    def to_fetch(self) -> tuple[FilePlan, ...]:
        """The files to download."""
        return tuple(f for f in self.files if f.action == "fetch")

    @property
    def to_link(self) -> tuple[FilePlan, ...]:
        """The files whose blob is cached and need only a snapshot link."""
        return tuple(f for f in self.files if f.action == "link")

    @property
    def bytes_total(self) -> int:
        """The size of every file of the commit, in bytes."""
        return sum(f.entry.size for f in self.files)

    @property
    def bytes_to_fetch(self) -> int:
        """The bytes to download (files to fetch only)."""
        return sum(f.bytes_to_fetch for f in self.files)


def plan_transfer(entries: Iterable[FileEntry], local: Mapping[str, LocalState]) -> TransferPlan:
    """Decide per file. Blobs with the same etag are fetched once (the first file carries it)."""
    plans: list[FilePlan] = []
    fetching: set[str] = set()
    for e in sorted(entries, key=lambda e: e.path):
        st = local.get(e.path, LocalState())
        if st.snapshot_ok:
            plans.append(FilePlan(e, "present"))
        elif st.blob_size == e.size or e.etag in fetching:
            plans.append(FilePlan(e, "link"))
        else:
            plans.append(FilePlan(e, "fetch"))
            fetching.add(e.etag)
    return TransferPlan(tuple(plans))
