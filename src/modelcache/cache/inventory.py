"""What the cache holds: repos, revisions, refs, sizes, completeness, last use. Frozen data."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from .layout import RepoLayout, repo_layouts
from .leases import is_pinned
from .readiness import check_revision
from .records import read_record
from .remove import snapshot_links
from .requests import describe, read_requests
from ..files import is_inside
from .usage import last_used

__all__ = ["RepoInfo", "RevisionInfo", "scan_cache", "scan_repo"]


@dataclass(frozen=True)
class RevisionInfo:
    """One cached revision: refs, files, size on disk, completeness, last use, pin."""

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
        """The fields as JSON types (``refs`` a list, ``snapshot`` a string), plus ``state``."""
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
    """One cached repo: its folder, size on disk (each blob once) and revisions."""

    repo_type: str
    repo_id: str
    path: Path
    size_on_disk: int
    revisions: tuple[RevisionInfo, ...]

    def to_dict(self) -> dict[str, object]:
        """``{"repo_type", "repo_id", "path", "size_on_disk", "revisions": [...]}``."""
        return {
            "repo_type": self.repo_type,
            "repo_id": self.repo_id,
            "path": str(self.path),
            "size_on_disk": self.size_on_disk,
            "revisions": [r.to_dict() for r in self.revisions],
        }


def _snapshot_blobs(layout: RepoLayout, commit: str) -> tuple[dict[Path, int], int]:
    """Real file behind every snapshot entry → its size (broken links, and links out of the cache,
    skipped); and how many entries lead to one."""
    out: dict[Path, int] = {}
    n = 0
    for p in snapshot_links(layout, commit):
        target = Path(os.path.realpath(p))
        if not is_inside(target, layout.cache_dir):
            continue
        try:
            st = target.lstat()
        except OSError:
            continue
        if stat.S_ISREG(st.st_mode):
            out[target] = st.st_size
            n += 1
    return out, n


def scan_repo(layout: RepoLayout) -> RepoInfo:
    """Read one repo from disk: every revision with its refs, sizes, completeness, last use and pin.

    Hashes nothing, but stats every snapshot link: slow on a huge repo.
    """
    refs_by_commit: dict[str, list[str]] = {}
    for name, commit in layout.all_refs().items():
        refs_by_commit.setdefault(commit, []).append(name)
    revisions = []
    all_blobs: dict[Path, int] = {}
    for commit in layout.commits():
        snap = layout.snapshot(commit)
        blobs, nfiles = _snapshot_blobs(layout, commit)
        all_blobs.update(blobs)
        record = read_record(layout.tree_record(commit), commit)
        revisions.append(
            RevisionInfo(
                commit=commit,
                refs=tuple(sorted(refs_by_commit.get(commit, []))),
                files=nfiles,
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
    """Every repo of the cache at ``cache_dir`` (none when it is not a directory)."""
    if not cache_dir.is_dir():
        return []
    return [scan_repo(layout) for layout in repo_layouts(cache_dir)]
