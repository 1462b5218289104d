"""The cache's lifecycle on ``ModelCache``: leases, pins, GC, verify/repair, quotas, bundles.

A mixin so ``service.py`` stays about downloading and checking; every method here is public
API of ``ModelCache``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING

from ..cache.bundle import BundleInfo, export_bundle, import_bundle
from ..cache.readiness import resolve_commit
from ..cache.gc import GcPlan, execute_gc, plan_gc, record_gc_freed, scan_revisions, sweep
from ..cache.layout import RepoLayout, parse_folder_name
from ..cache.leases import Lease, LeaseInfo, acquire_lease, active_leases, is_pinned, list_pins, pin, release_lease
from ..cache.leases import renew_lease as _renew
from ..cache.leases import unpin as _unpin
from ..cache.quota import Usage, cache_usage, read_budget, write_budget
from ..cache.records import read_record
from ..cache.verify import VerifyReport, verify_revision
from ..errors import InvalidInput, NotCached
from ..progress import NullProgress

if TYPE_CHECKING:
    from ..settings import Settings

__all__ = ["GcReport", "Lifecycle"]


@dataclass(frozen=True)
class GcReport:
    plan: GcPlan
    dry_run: bool
    swept: dict[str, dict[str, int]]
    skipped: tuple[str, ...]

    def to_dict(self) -> dict[str, object]:
        return {**self.plan.to_dict(), "dry_run": self.dry_run, "swept": self.swept, "skipped": list(self.skipped)}


class Lifecycle:
    settings: Settings

    def layout(self, repo_id: str, repo_type: str = "model") -> RepoLayout:  # provided by ModelCache
        raise NotImplementedError

    def _commit(self, repo_id: str, revision: str, repo_type: str = "model") -> tuple[RepoLayout, str]:
        layout = self.layout(repo_id, repo_type)
        commit = resolve_commit(layout, revision)
        if commit is None:
            raise NotCached(f"{repo_id}@{revision} is not in the cache at {layout.cache_dir}",
                            "download it first, or see `modelcache ls`")
        return layout, commit

    # -- leases and pins ----------------------------------------------------------------------------
    def lease(self, repo_id: str, revision: str = "main", holder: str = "", ttl: float = 60.0,
              repo_type: str = "model") -> Lease:
        """``with mc.lease("org/model", holder="vllm-0"):`` — GC keeps the revision while the block runs."""
        layout, commit = self._commit(repo_id, revision, repo_type)
        return Lease(layout, commit, holder or f"pid-{__import__('os').getpid()}", ttl)

    def acquire_lease(self, repo_id: str, revision: str = "main", holder: str = "", ttl: float = 3600.0,
                      repo_type: str = "model") -> LeaseInfo:
        layout, commit = self._commit(repo_id, revision, repo_type)
        return acquire_lease(layout, commit, holder or "cli", ttl)

    def renew_lease(self, repo_id: str, lease_id: str, ttl: float = 3600.0, repo_type: str = "model") -> LeaseInfo:
        return _renew(self.layout(repo_id, repo_type), lease_id, ttl)

    def release_lease(self, repo_id: str, lease_id: str, repo_type: str = "model") -> bool:
        return release_lease(self.layout(repo_id, repo_type), lease_id)

    def leases(self, repo_id: str | None = None, repo_type: str = "model") -> list[LeaseInfo]:
        layouts = [self.layout(repo_id, repo_type)] if repo_id else _layouts(self.settings.cache_dir)
        return [lease for layout in layouts for lease in active_leases(layout)]

    def pin(self, repo_id: str, revision: str = "main", repo_type: str = "model") -> str:
        layout, commit = self._commit(repo_id, revision, repo_type)
        pin(layout, commit, note=revision)
        return commit

    def unpin(self, repo_id: str, revision: str = "main", repo_type: str = "model") -> str:
        layout = self.layout(repo_id, repo_type)
        commit = resolve_commit(layout, revision) or revision
        if not _unpin(layout, commit):
            raise NotCached(f"{repo_id}@{revision} is not pinned", "see `modelcache pin --list`")
        return commit

    def pins(self) -> list[tuple[str, str]]:
        return [(layout.repo_id, c) for layout in _layouts(self.settings.cache_dir) for c in list_pins(layout)]

    def is_pinned(self, repo_id: str, revision: str = "main", repo_type: str = "model") -> bool:
        layout, commit = self._commit(repo_id, revision, repo_type)
        return is_pinned(layout, commit)

    # -- gc ------------------------------------------------------------------------------------------
    def gc(self, *, max_size: int | None = None, max_age: float | None = None, keep_last: int | None = None,
           dry_run: bool = False, roots: Sequence[Path] | None = None,
           partial_max_age: float = 24 * 3600.0) -> GcReport:
        roots = list(roots or [self.settings.cache_dir])
        if max_size is None and len(roots) == 1:
            max_size = read_budget(roots[0])
        if keep_last is not None and keep_last < 0:
            raise InvalidInput(f"invalid --keep-last {keep_last}", "give 0 or more")
        stale = self.settings.lock_stale_after
        swept = {str(r): sweep(r, partial_max_age=partial_max_age, stale_after=stale, dry_run=dry_run) for r in roots}
        revisions = scan_revisions(roots, stale)
        plan = plan_gc(revisions, max_size=max_size, max_age=max_age, keep_last=keep_last, now=time.time())
        skipped = () if dry_run else tuple(execute_gc(plan, stale))
        if not dry_run:
            for root in roots:
                freed = sum(d.freed for d in plan.remove if d.revision.cache_dir == root)
                freed += swept[str(root)].get("partial_bytes", 0) + swept[str(root)].get("orphan_bytes", 0)
                if freed:
                    record_gc_freed(root, freed)
        return GcReport(plan, dry_run, swept, skipped)

    # -- verify ----------------------------------------------------------------------------------------
    def verify(self, repo_id: str | None = None, revision: str | None = None, *, repair: bool = False,
               profile: str = "full", repo_type: str = "model") -> list[VerifyReport]:
        targets: list[tuple[RepoLayout, str]] = []
        if repo_id is None:
            targets = [(lay, c) for lay in _layouts(self.settings.cache_dir) for c in lay.commits()]
        elif revision is None:
            lay = self.layout(repo_id, repo_type)
            targets = [(lay, c) for c in lay.commits()]
            if not targets:
                raise NotCached(f"{repo_id} is not in the cache", "see `modelcache ls`")
        else:
            targets = [self._commit(repo_id, revision, repo_type)]
        reports = []
        for layout, commit in targets:
            report = verify_revision(layout, commit, profile)
            if repair and report.problems:
                self._repair(layout, commit, report)
                report = verify_revision(layout, commit, profile)
            reports.append(report)
        return reports

    def _repair(self, layout: RepoLayout, commit: str, report: VerifyReport) -> None:
        from ..files import confined_unlink
        from .ensure import ensure_files

        record = read_record(layout.tree_record(commit), commit)
        if record is None:
            return
        entries = [record.files[p.path] for p in report.problems]
        for e in entries:  # the bad blob is shared by every snapshot linking it: drop it for all
            if any(p.kind != "missing" for p in report.problems if p.path == e.path):
                confined_unlink(layout.blob(e.etag), layout.cache_dir)  # never through a planted link
            confined_unlink(layout.snapshot_file(commit, e.path), layout.cache_dir)
        ensure_files(self.settings, self.client, layout, record, entries, NullProgress())  # type: ignore[attr-defined]

    # -- quota ------------------------------------------------------------------------------------------
    def usage(self, root: Path | None = None) -> Usage:
        return cache_usage(root or self.settings.cache_dir)

    def set_budget(self, max_size: int | None, root: Path | None = None) -> None:
        root = root or self.settings.cache_dir
        root.mkdir(parents=True, exist_ok=True)
        write_budget(root, max_size)

    # -- bundles ---------------------------------------------------------------------------------------
    def export(self, repo_id: str, revision: str, out: IO[bytes], repo_type: str = "model") -> BundleInfo:
        layout, commit = self._commit(repo_id, revision, repo_type)
        record = read_record(layout.tree_record(commit), commit)
        if record is None:
            raise NotCached(f"{repo_id}@{revision} has no completeness record", "download it with modelcache first")
        return export_bundle(layout, record, revision, out)

    def import_bundle(self, src: IO[bytes]) -> BundleInfo:
        return import_bundle(self.settings.cache_dir, src)


def _layouts(cache_dir: Path) -> list[RepoLayout]:
    if not cache_dir.is_dir():
        return []
    out = []
    for entry in sorted(cache_dir.iterdir()):
        parsed = parse_folder_name(entry.name)
        if parsed is not None and entry.is_dir():
            out.append(RepoLayout(cache_dir, *parsed))
    return out
