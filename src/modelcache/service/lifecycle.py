"""The cache's lifecycle: leases, pins, GC, verify/repair, quotas, bundles.

``CacheLifecycle`` is a component of ``ModelCache`` (which exposes each of its public methods
under the same name), so ``model_cache.py`` stays about downloading and checking.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from ..cache.bundle import BundleInfo, export_bundle, import_bundle
from ..cache.readiness import resolve_commit
from ..cache.gc import GcPlan, execute_gc, plan_gc, record_gc_freed, scan_revisions, sweep
from ..cache.gc_extras import registered_revisions, remove_empty_repos
from ..cache.layout import RepoLayout, repo_layouts
from ..cache.leases import Lease, LeaseInfo, acquire_lease, active_leases, is_pinned, list_pins, pin, release_lease
from ..cache.leases import renew_lease as _renew
from ..cache.leases import unpin as _unpin
from ..cache.quota import Usage, cache_usage, read_budget, write_budget
from ..cache.records import read_record
from ..cache.verify import VerifyReport, verify_revision
from ..errors import InvalidInput, NotCached
from ..hub.client import HubClient
from ..progress import NullProgress
from ..settings import Settings
from .ensure import ensure_files

__all__ = ["CacheLifecycle", "GcReport"]


@dataclass(frozen=True)
class GcReport:
    """What ``gc`` did or would do: the plan, the sweep's counts per root, and the removals skipped.

    A removal is skipped when its revision became protected after the plan was made.
    """

    plan: GcPlan
    dry_run: bool
    swept: dict[str, dict[str, int]]
    skipped: tuple[str, ...]

    def to_dict(self) -> dict[str, object]:
        """JSON-ready dict: the plan's fields plus ``dry_run``, ``swept`` (per root) and ``skipped``."""
        return {**self.plan.to_dict(), "dry_run": self.dry_run, "swept": self.swept, "skipped": list(self.skipped)}


class CacheLifecycle:
    """Leases, pins, GC, verify/repair, quotas and bundles over one cache root.

    ``client`` gives the Hub client (made on first use) that ``verify(repair=True)`` fetches with."""

    def __init__(self, settings: Settings, client: Callable[[], HubClient]) -> None:
        self.settings = settings
        self._client = client

    def layout(self, repo_id: str, repo_type: str = "model") -> RepoLayout:
        """The layout of one repo of this cache (the repo id and type validated)."""
        return RepoLayout(self.settings.cache_dir, repo_type, repo_id)

    def _commit(self, repo_id: str, revision: str, repo_type: str = "model") -> tuple[RepoLayout, str]:
        layout = self.layout(repo_id, repo_type)
        commit = resolve_commit(layout, revision, prefix=True)
        if commit is None:
            raise NotCached(f"{repo_id}@{revision} is not in the cache at {layout.cache_dir}",
                            "download it first, or see `modelcache ls`")
        return layout, commit

    # -- leases and pins ----------------------------------------------------------------------------
    def lease(self, repo_id: str, revision: str = "main", holder: str = "", ttl: float = 60.0,
              repo_type: str = "model") -> Lease:
        """``with mc.lease("org/model", holder="vllm-0"):`` — GC keeps the revision while the block runs."""
        layout, commit = self._commit(repo_id, revision, repo_type)
        return Lease(layout, commit, holder or f"pid-{os.getpid()}", ttl)

    def acquire_lease(self, repo_id: str, revision: str = "main", holder: str = "", ttl: float = 3600.0,
                      repo_type: str = "model") -> LeaseInfo:
        """Lease a cached revision: GC keeps it until released, or ``ttl`` seconds pass without a renewal.

        NotCached if the revision is not in the cache.
        """
        layout, commit = self._commit(repo_id, revision, repo_type)
        return acquire_lease(layout, commit, holder or "cli", ttl)

    def renew_lease(self, repo_id: str, lease_id: str, ttl: float = 3600.0, repo_type: str = "model") -> LeaseInfo:
        """Make lease ``lease_id`` expire ``ttl`` seconds from now; InvalidInput if there is no such lease."""
        return _renew(self.layout(repo_id, repo_type), lease_id, ttl)

    def release_lease(self, repo_id: str, lease_id: str, repo_type: str = "model") -> bool:
        """Drop lease ``lease_id``; False if there was no such lease."""
        return release_lease(self.layout(repo_id, repo_type), lease_id)

    def leases(self, repo_id: str | None = None, repo_type: str = "model") -> list[LeaseInfo]:
        """The unexpired leases of one repo, or of every repo in the cache."""
        layouts = [self.layout(repo_id, repo_type)] if repo_id else repo_layouts(self.settings.cache_dir)
        return [lease for layout in layouts for lease in active_leases(layout)]

    def pin(self, repo_id: str, revision: str = "main", repo_type: str = "model") -> str:
        """Keep a cached revision from GC until ``unpin``; returns its commit. NotCached if it is not cached."""
        layout, commit = self._commit(repo_id, revision, repo_type)
        pin(layout, commit, note=revision)
        return commit

    def unpin(self, repo_id: str, revision: str = "main", repo_type: str = "model") -> str:
        """Remove the pin of ``revision`` (a ref or a commit); returns the commit. NotCached if not pinned."""
        layout = self.layout(repo_id, repo_type)
        commit = resolve_commit(layout, revision, prefix=True) or revision
        if not _unpin(layout, commit):
            raise NotCached(f"{repo_id}@{revision} is not pinned", "see `modelcache pin --list`")
        return commit

    def pins(self) -> list[tuple[str, str]]:
        """Every pin in the cache, as ``(repo_id, commit)``."""
        return [(layout.repo_id, c) for layout in repo_layouts(self.settings.cache_dir) for c in list_pins(layout)]

    def is_pinned(self, repo_id: str, revision: str = "main", repo_type: str = "model") -> bool:
        """Whether a cached revision is pinned; NotCached if it is not in the cache."""
        layout, commit = self._commit(repo_id, revision, repo_type)
        return is_pinned(layout, commit)

    # -- gc ------------------------------------------------------------------------------------------
    def gc(self, *, max_size: int | None = None, max_age: float | None = None, keep_last: int | None = None,
           dry_run: bool = False, roots: Sequence[Path] | None = None,
           partial_max_age: float = 24 * 3600.0,
           in_use: Callable[[], Mapping[tuple[str, str], str]] | None = None) -> GcReport:
        """Sweep stale leftovers, then remove revisions by the policy; ``dry_run`` only reports.

        ``max_size`` in bytes (default: the root's budget when there is one root), ``max_age`` and
        ``partial_max_age`` in seconds, ``keep_last`` per repo. Pinned, leased, still-downloading and
        registered (``models add``) revisions are kept, re-checked just before each removal (what
        became protected is ``skipped``). ``in_use``: asked before planning and again just before
        removing for revisions held from outside the cache, e.g. ``k8s.pods`` (live pods'
        revisions); if it raises, nothing is removed. Empty repo folders go too.
        """
        roots = [Path(r) for r in (roots or [self.settings.cache_dir])]
        if max_size is None and len(roots) == 1:
            max_size = read_budget(roots[0])
        if keep_last is not None and keep_last < 0:
            raise InvalidInput(f"invalid --keep-last {keep_last}", "give 0 or more")
        stale = self.settings.lock_stale_after

        def held() -> dict[tuple[str, str], str]:
            out: dict[tuple[str, str], str] = {}
            for root in roots:
                for key, why in registered_revisions(root).items():
                    out.setdefault(key, why)
            for key, why in (in_use() if in_use else {}).items():
                out.setdefault(key, why)
            return out

        protect = held()
        swept = {str(r): sweep(r, partial_max_age=partial_max_age, stale_after=stale, dry_run=dry_run) for r in roots}
        revisions = scan_revisions(roots, stale, protect)
        plan = plan_gc(revisions, max_size=max_size, max_age=max_age, keep_last=keep_last, now=time.time())
        skipped = () if dry_run else tuple(execute_gc(plan, stale, held() if plan.remove else protect))
        for root in roots:  # a repo folder with nothing left in it goes too
            swept[str(root)]["empty_repos"] = len(remove_empty_repos(root, stale_after=stale, dry_run=dry_run))
        if not dry_run:
            for root in roots:
                freed = sum(d.freed for d in plan.remove if d.revision.cache_dir == root)
                freed += swept[str(root)].get("partial_bytes", 0) + swept[str(root)].get("orphan_bytes", 0)
                if freed:
                    record_gc_freed(root, freed)
        return GcReport(plan, dry_run, swept, skipped)

    # -- verify ----------------------------------------------------------------------------------------
    def verify(self, repo_id: str | None = None, revision: str | None = None, *, repair: bool = False,
               profile: str | None = None, repo_type: str = "model") -> list[VerifyReport]:
        """Check cached revisions against their records: the whole cache, one repo, or one revision.

        Each revision is judged by what was asked of it (``profile`` None: the recorded downloads'
        profiles and patterns), or by ``profile``. ``repair=True`` deletes the bad files, fetches
        them again and re-checks. NotCached when the repo or revision asked for is not in the cache.
        """
        targets: list[tuple[RepoLayout, str]] = []
        if repo_id is None:
            targets = [(lay, c) for lay in repo_layouts(self.settings.cache_dir) for c in lay.commits()]
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
        record = read_record(layout.tree_record(commit), commit)
        if record is None:
            return
        entries = [record.files[p.path] for p in report.problems]
        for e in entries:  # the bad blob is shared by every snapshot linking it: drop it for all
            if any(p.kind != "missing" for p in report.problems if p.path == e.path):
                layout.blob(e.etag).unlink(missing_ok=True)
            layout.snapshot_file(commit, e.path).unlink(missing_ok=True)
        ensure_files(self.settings, self._client(), layout, record, entries, NullProgress())

    # -- quota ------------------------------------------------------------------------------------------
    def usage(self, root: str | os.PathLike[str] | None = None) -> Usage:
        """Bytes used in the cache root (or ``root``), its budget and the disk's free space."""
        return cache_usage(Path(root) if root else self.settings.cache_dir)

    def set_budget(self, max_size: int | None, root: str | os.PathLike[str] | None = None) -> None:
        """Set the size budget in bytes of the cache root (or ``root``) that ``gc`` uses by default.

        ``None`` clears it; a size that is not positive is InvalidInput. Creates the root if needed.
        """
        root = Path(root) if root else self.settings.cache_dir
        root.mkdir(parents=True, exist_ok=True)
        write_budget(root, max_size)

    # -- bundles ---------------------------------------------------------------------------------------
    def export(self, repo_id: str, revision: str, out: IO[bytes], repo_type: str = "model") -> BundleInfo:
        """Write a cached revision to ``out`` as a bundle (a tar stream); only files complete on disk go in.

        NotCached without the revision or its completeness record.
        """
        layout, commit = self._commit(repo_id, revision, repo_type)
        record = read_record(layout.tree_record(commit), commit)
        if record is None:
            raise NotCached(f"{repo_id}@{revision} has no completeness record", "download it with modelcache first")
        return export_bundle(layout, record, revision, out)

    def import_bundle(self, src: IO[bytes]) -> BundleInfo:
        """Read a bundle made by ``export`` from ``src`` into the cache root; InvalidInput if it is not one."""
        return import_bundle(self.settings.cache_dir, src)
