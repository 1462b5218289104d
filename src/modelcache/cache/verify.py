"""``verify``: re-hash a revision's files against its completeness record — the files that were asked."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..files import NotRegularFile, open_in_root
from ..hashing import CHUNK, BlobHasher
from ..profiles import select
from .layout import RepoLayout
from ..protocol import FileEntry
from .records import read_record
from .requests import asked_paths, read_requests

__all__ = ["FileProblem", "VerifyReport", "verify_revision"]


@dataclass(frozen=True)
class FileProblem:
    """One file that failed ``verify``: ``missing``, ``wrong-size`` or ``corrupt``."""

    path: str
    kind: str  # missing | wrong-size | corrupt
    detail: str

    def to_dict(self) -> dict[str, str]:
        """``{"path", "kind", "detail"}``."""
        return {"path": self.path, "kind": self.kind, "detail": self.detail}


@dataclass(frozen=True)
class VerifyReport:
    """What ``verify`` found for one revision: files checked, bytes hashed, problems."""

    repo_id: str
    commit: str
    checked: int
    bytes_hashed: int
    problems: tuple[FileProblem, ...]
    has_record: bool = True

    @property
    def ok(self) -> bool:
        """True when there is a completeness record and no problem."""
        return self.has_record and not self.problems

    def to_dict(self) -> dict[str, object]:
        """``{"repo_id", "commit", "ok", "checked", "bytes_hashed", "has_record", "problems"}``."""
        return {"repo_id": self.repo_id, "commit": self.commit, "ok": self.ok, "checked": self.checked,
                "bytes_hashed": self.bytes_hashed, "has_record": self.has_record,
                "problems": [p.to_dict() for p in self.problems]}


def _digest_fd(fd: int, size: int, lfs: bool) -> str:
    hasher = BlobHasher(size, lfs)
    offset = 0
    while offset < size and (chunk := os.pread(fd, min(CHUNK, size - offset), offset)):
        hasher.update(chunk)
        offset += len(chunk)
    return hasher.hexdigest()


def _check_file(layout: RepoLayout, snapshot: Path, e: FileEntry) -> FileProblem | None:
    path = snapshot / e.path
    try:
        fd = open_in_root(path, layout.cache_dir)  # never a FIFO, never a link out of the cache
    except NotRegularFile as exc:
        return FileProblem(e.path, "missing", f"not a regular file inside the cache ({exc.strerror})")
    except OSError:
        return FileProblem(e.path, "missing", "not in the snapshot (or a broken link)")
    try:
        size = os.fstat(fd).st_size
        if size != e.size:
            return FileProblem(e.path, "wrong-size", f"{size} bytes, expected {e.size}")
        digest = _digest_fd(fd, e.size, e.is_lfs)
    finally:
        os.close(fd)
    if digest != e.etag:
        algo = "sha256" if e.is_lfs else "git sha1"
        return FileProblem(e.path, "corrupt", f"{algo} {digest[:12]}…, expected {e.etag[:12]}…")
    return None


def verify_revision(layout: RepoLayout, commit: str, profile: str | None = None) -> VerifyReport:
    """Check every file that was asked of the revision (size, then hash).

    ``profile`` None: what the downloads of it asked (``cache/requests.py``: each ask's profile and
    patterns), or every file of the record when nothing is recorded. A profile: the files it asked
    of that profile (nothing recorded: the profile's files of the record).
    """
    record = read_record(layout.tree_record(commit), commit)
    if record is None:
        return VerifyReport(layout.repo_id, commit, 0, 0, (), has_record=False)
    snapshot = layout.snapshot(commit)
    requests = read_requests(layout, commit)
    wanted: set[str] | None
    if profile is None:
        wanted = {p for r in requests for p in select(record.files, r.profile, r.include, r.exclude)} or None
    else:
        wanted = asked_paths(record.files, profile, requests)
        if wanted is None:
            wanted = set(select(record.files, profile))
    problems, checked, hashed = [], 0, 0
    for e in record.files.values():
        if wanted is not None and e.path not in wanted:
            continue
        checked += 1
        problem = _check_file(layout, snapshot, e)
        if problem is None or problem.kind == "corrupt":
            hashed += e.size
        if problem:
            problems.append(problem)
    return VerifyReport(layout.repo_id, commit, checked, hashed, tuple(problems))
