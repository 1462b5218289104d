"""``rm``: scan → plan → execute. Refs and snapshots go before blobs; shared blobs stay."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..files import confined_rmtree, confined_unlink, is_inside
from .layout import RepoLayout

__all__ = ["RemovalPlan", "execute_removal", "plan_removal"]


@dataclass(frozen=True)
class RemovalPlan:
    """What ``rm`` would remove: refs, snapshots, records and the blobs no other revision uses."""

    repo_id: str
    commits: tuple[str, ...]
    refs: tuple[Path, ...]
    snapshots: tuple[Path, ...]
    records: tuple[Path, ...]
    blobs: tuple[Path, ...]
    expected_freed_size: int
    whole_repo: bool

    def to_dict(self) -> dict[str, object]:
        """``{"repo_id", "commits", "refs" (names), "blobs" (a count), "expected_freed_size", "whole_repo"}``."""
        return {
            "repo_id": self.repo_id,
            "commits": list(self.commits),
            "refs": [p.name for p in self.refs],
            "blobs": len(self.blobs),
            "expected_freed_size": self.expected_freed_size,
            "whole_repo": self.whole_repo,
        }


def snapshot_links(layout: RepoLayout, commit: str) -> list[Path]:
    """Every entry (link or copied-in file) under ``snapshots/<commit>/``, walked without following links."""
    snap = layout.snapshot(commit)
    if snap.is_symlink() or not snap.is_dir():
        return []
    out = []
    for root, dirs, files in os.walk(snap, followlinks=False):
        base = Path(root)
        out.extend(base / f for f in files)
        out.extend(base / d for d in dirs if (base / d).is_symlink())
    return out


def _blobs_of(layout: RepoLayout, commit: str) -> set[Path]:
    """The blobs of this repo a snapshot links to: only files directly in ``blobs/``, and only
    when ``blobs/`` itself lies inside the cache (never a planted link's target)."""
    if not is_inside(layout.blobs, layout.cache_dir) or layout.blobs.is_symlink():
        return set()
    blobs_dir = os.path.realpath(layout.blobs)
    out = set()
    for p in snapshot_links(layout, commit):
        if p.is_symlink():
            target = os.path.realpath(p)
            if os.path.dirname(target) == blobs_dir:
                out.add(Path(target))
    return out


def plan_removal(layout: RepoLayout, commits: list[str], keep_folder: bool = False) -> RemovalPlan:
    """Remove ``commits``; blobs still used by another snapshot are kept. ``keep_folder``: leave
    the repo folder (and its state) even when no revision remains."""
    remaining = [c for c in layout.commits() if c not in commits]
    keep: set[Path] = set()
    for c in remaining:
        keep |= _blobs_of(layout, c)
    drop: set[Path] = set()
    for c in commits:
        drop |= _blobs_of(layout, c)
    drop -= keep
    refs = tuple(
        layout.refs / name for name, commit in layout.all_refs().items() if commit in commits
    )
    size = 0
    for b in drop:
        try:
            size += b.stat().st_size
        except OSError:
            pass
    return RemovalPlan(
        repo_id=layout.repo_id,
        commits=tuple(commits),
        refs=refs,
        snapshots=tuple(layout.snapshot(c) for c in commits),
        records=tuple(layout.tree_record(c) for c in commits),
        blobs=tuple(sorted(drop)),
        expected_freed_size=size,
        whole_repo=not remaining and not keep_folder,
    )


def execute_removal(layout: RepoLayout, plan: RemovalPlan) -> None:
    """Delete what the plan names, never through a link and never outside the cache."""
    root = layout.cache_dir
    for ref in plan.refs:
        confined_unlink(ref, root)
    for snap in plan.snapshots:
        confined_rmtree(snap, root)
    for rec in plan.records:
        confined_unlink(rec, root)
    for blob in plan.blobs:
        if is_inside(blob, root):
            confined_unlink(blob, root)
    if plan.whole_repo:
        confined_rmtree(layout.folder, root)
