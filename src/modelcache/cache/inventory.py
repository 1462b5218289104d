"""What the cache holds: repos, revisions, refs, sizes, completeness, last use. Frozen data."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .layout import RepoLayout, parse_folder_name
from .leases import is_pinned
from .readiness import check_revision
from .records import read_record
from .requests import describe, read_requests
from .usage import last_used

__all__ = ["RepoInfo", "RevisionInfo", "scan_cache", "scan_repo"]


@dataclass(frozen=True)
class RevisionInfo:
    commit: str
    refs: tuple[str, ...]
    files: int
    size_on_disk: int
    complete: bool
    tokenizer_ready: bool
    expected_files: int | None
    expected_size: int | None
    last_used: float | None
    snapshot: Path
    asked: str = ""
    """What downloads asked of it (``full --exclude original/*``); empty when not recorded."""
    pinned: bool = False

    @property
    def state(self) -> str:
        """``complete`` (every file of the commit), ``ready`` (every file that was asked, loadable),
        ``tokenizer`` (config and tokenizer only), or ``incomplete``."""
        if self.complete:
            every = self.expected_files is None or self.files >= self.expected_files
            return "complete" if every else "ready"
        return "tokenizer" if self.tokenizer_ready else "incomplete"

    def to_dict(self) -> dict[str, object]:
        return {
            "commit": self.commit,
            "refs": list(self.refs),
            "files": self.files,
            "size_on_disk": self.size_on_disk,
            "complete": self.complete,
            "tokenizer_ready": self.tokenizer_ready,
            "expected_files": self.expected_files,
            "expected_size": self.expected_size,
            "last_used": self.last_used,
            "snapshot": str(self.snapshot),
            "state": self.state,
            "asked": self.asked,
            "pinned": self.pinned,
        }


@dataclass(frozen=True)
class RepoInfo:
    repo_type: str
    repo_id: str
    path: Path
    size_on_disk: int
    revisions: tuple[RevisionInfo, ...]

    def to_dict(self) -> dict[str, object]:
        return {
            "repo_type": self.repo_type,
            "repo_id": self.repo_id,
            "path": str(self.path),
            "size_on_disk": self.size_on_disk,
            "revisions": [r.to_dict() for r in self.revisions],
        }


def _snapshot_blobs(snapshot: Path) -> dict[Path, int]:
    """Real file behind every snapshot entry → its size (broken links skipped)."""
    out: dict[Path, int] = {}
    for p in snapshot.rglob("*"):
        if p.is_dir():
            continue
        target = Path(os.path.realpath(p))
        try:
            out[target] = target.stat().st_size
        except OSError:
            continue
    return out


def scan_repo(layout: RepoLayout) -> RepoInfo:
    refs_by_commit: dict[str, list[str]] = {}
    for name, commit in layout.all_refs().items():
        refs_by_commit.setdefault(commit, []).append(name)
    revisions = []
    all_blobs: dict[Path, int] = {}
    for commit in layout.commits():
        snap = layout.snapshot(commit)
        blobs = _snapshot_blobs(snap)
        all_blobs.update(blobs)
        record = read_record(layout.tree_record(commit), commit)
        revisions.append(
            RevisionInfo(
                commit=commit,
                refs=tuple(sorted(refs_by_commit.get(commit, []))),
                files=sum(1 for p in snap.rglob("*") if not p.is_dir() and p.exists()),
                size_on_disk=sum(blobs.values()),
                complete=check_revision(layout, commit, "full").ready,
                tokenizer_ready=check_revision(layout, commit, "tokenizer").ready,
                expected_files=len(record.files) if record else None,
                expected_size=record.total_size if record else None,
                last_used=last_used(layout, commit),
                snapshot=snap,
                asked=describe(read_requests(layout, commit)),
                pinned=is_pinned(layout, commit),
            )
        )
    return RepoInfo(
        layout.repo_type, layout.repo_id, layout.folder, sum(all_blobs.values()), tuple(revisions)
    )


def scan_cache(cache_dir: Path) -> list[RepoInfo]:
    if not cache_dir.is_dir():
        return []
    repos = []
    for entry in sorted(cache_dir.iterdir()):
        parsed = parse_folder_name(entry.name)
        if parsed is None or not entry.is_dir():
            continue
        repos.append(scan_repo(RepoLayout(cache_dir, *parsed)))
    return repos
