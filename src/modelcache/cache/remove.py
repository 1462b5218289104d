"""``rm``: scan → plan → execute. Refs and snapshots go before blobs; shared blobs stay."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from .layout import RepoLayout

__all__ = ["RemovalPlan", "execute_removal", "plan_removal"]


@dataclass(frozen=True)
class RemovalPlan:
    repo_id: str
    commits: tuple[str, ...]
    refs: tuple[Path, ...]
    snapshots: tuple[Path, ...]
    records: tuple[Path, ...]
    blobs: tuple[Path, ...]
    expected_freed_size: int
    whole_repo: bool

    def to_dict(self) -> dict[str, object]:
        return {
            "repo_id": self.repo_id,
            "commits": list(self.commits),
            "refs": [p.name for p in self.refs],
            "blobs": len(self.blobs),
            "expected_freed_size": self.expected_freed_size,
            "whole_repo": self.whole_repo,
        }


def _blobs_of(layout: RepoLayout, commit: str) -> set[Path]:
    blobs_dir = os.path.realpath(layout.blobs)
    out = set()
    for p in layout.snapshot(commit).rglob("*"):
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
    for ref in plan.refs:
        ref.unlink(missing_ok=True)
    for snap in plan.snapshots:
        shutil.rmtree(snap, ignore_errors=True)
    for rec in plan.records:
        rec.unlink(missing_ok=True)
    for blob in plan.blobs:
        blob.unlink(missing_ok=True)
    if plan.whole_repo:
        shutil.rmtree(layout.folder, ignore_errors=True)
