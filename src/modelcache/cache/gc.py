"""Garbage collection: scan → plan → execute.

- ``scan_revisions`` reads the disk into frozen ``RevisionState`` records (sizes, blobs, last
  use, pins, leases, in-progress markers).
- ``plan_gc`` is pure: it picks revisions to remove — never a pinned, leased, in-progress one, nor
  one held from outside (a live pod's, a registered model's: ``protect``)
  — by age (``max_age``), count per repo (``keep_last``) and then least-recently-used first until
  the cache fits ``max_size``; each with the reason. Blobs shared with a surviving revision of
  the same repo are kept and not counted as freed.
- ``execute_gc`` removes refs, then snapshots and records, then blobs; then sweeps stale
  partial downloads, dead locks, dead markers and expired leases.
"""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from .._format import human_size
from ..errors import CacheError
from ..files import confined_unlink, is_inside, read_state_or_none, safe_iterdir
from .activity import in_progress, repo_guard, sweep_dead_markers
from .layout import RepoLayout, repo_layouts
from .leases import active_leases, is_pinned, sweep_expired
from .locks import fs_now, lock_is_dead, read_lock
from .remove import execute_removal, plan_removal, snapshot_links
from .usage import last_used

__all__ = ["GcDecision", "GcPlan", "Protection", "RevisionState", "execute_gc", "plan_gc", "read_gc_freed",
           "record_gc_freed",
           "scan_revisions", "sweep"]

PARTIAL_MAX_AGE = 24 * 3600.0
TMP_MAX_AGE = 600.0


@dataclass(frozen=True)
class RevisionState:
    """One cached revision as ``scan_revisions`` saw it: refs, blobs, last use and what protects it."""

    cache_dir: Path
    repo_type: str
    repo_id: str
    commit: str
    refs: tuple[str, ...]
    blobs: frozenset[tuple[str, int]]
    """(blob path, size) of every blob the snapshot links to."""
    last_used: float
    pinned: bool
    leased: bool
    in_progress: bool
    held_by: str | None = None
    """Protected from outside the cache: ``in use by pod ns/name``, ``registered as model …``."""

    @property
    def key(self) -> tuple[str, str, str]:
        """``(cache dir, repo id, commit)``: identifies the revision across caches."""
        return (str(self.cache_dir), self.repo_id, self.commit)

    @property
    def protected_by(self) -> str | None:
        """Why GC must keep this revision (``pinned``, ``leased``, ``download in progress``, a hold), or None."""
        if self.pinned:
            return "pinned"
        if self.leased:
            return "leased"
        if self.in_progress:
            return "download in progress"
        return self.held_by or None


@dataclass(frozen=True)
class GcDecision:
    """One revision GC removes: why, and how many bytes that frees."""

    revision: RevisionState
    reason: str
    freed: int

    def to_dict(self) -> dict[str, object]:
        """``{"cache_dir", "repo_id", "commit", "refs", "last_used", "reason", "freed"}``."""
        r = self.revision
        return {"cache_dir": str(r.cache_dir), "repo_id": r.repo_id, "commit": r.commit, "refs": list(r.refs),
                "last_used": r.last_used, "reason": self.reason, "freed": self.freed}


@dataclass(frozen=True)
class GcPlan:
    """What a GC run would remove and keep (sizes in bytes); computed by ``plan_gc``, nothing done yet."""

    remove: tuple[GcDecision, ...]
    kept: tuple[tuple[RevisionState, str], ...]
    size_before: int
    size_after: int
    max_size: int | None
    notes: tuple[str, ...] = field(default=())

    @property
    def freed(self) -> int:
        """Bytes the plan frees (``size_before - size_after``)."""
        return self.size_before - self.size_after

    def to_dict(self) -> dict[str, object]:
        """``{"remove", "protected", "size_before", "size_after", "freed", "max_size", "notes"}``."""
        return {
            "remove": [d.to_dict() for d in self.remove],
            "protected": [{"repo_id": r.repo_id, "commit": r.commit, "why": why} for r, why in self.kept],
            "size_before": self.size_before,
            "size_after": self.size_after,
            "freed": self.freed,
            "max_size": self.max_size,
            "notes": list(self.notes),
        }


# -- scan ------------------------------------------------------------------------------------------
def _snapshot_blobs(layout: RepoLayout, commit: str) -> frozenset[tuple[str, int]]:
    """(real path, size) of every file the snapshot holds or links to inside the cache."""
    out = set()
    for p in snapshot_links(layout, commit):
        target = os.path.realpath(p)
        if not is_inside(target, layout.cache_dir):
            continue  # a link out of the cache is never counted, never collected
        try:
            st = os.stat(target)
        except OSError:
            continue
        if stat.S_ISREG(st.st_mode):
            out.add((target, st.st_size))
    return frozenset(out)


Protection = Mapping[tuple[str, str], str]
"""``{(repo_id, commit): why}``: revisions held from outside the cache (live pods, the model registry)."""


def scan_revisions(cache_dirs: Iterable[Path], stale_after: float = 30.0,
                   protect: Protection | None = None) -> list[RevisionState]:
    """Every revision of every root, with what protects it (``protect``: held from outside)."""
    protect = protect or {}
    now = time.time()
    out: list[RevisionState] = []
    for cache_dir in cache_dirs:
        if not cache_dir.is_dir():
            continue
        for layout in repo_layouts(cache_dir):
            refs = layout.all_refs()
            leased = {i.commit for i in active_leases(layout, now=now)}
            for commit in layout.commits():
                used = last_used(layout, commit)
                if used is None:
                    try:
                        used = layout.snapshot(commit).lstat().st_mtime
                    except OSError:
                        used = 0.0
                out.append(RevisionState(
                    cache_dir=cache_dir, repo_type=layout.repo_type, repo_id=layout.repo_id, commit=commit,
                    refs=tuple(sorted(r for r, c in refs.items() if c == commit)),
                    blobs=_snapshot_blobs(layout, commit), last_used=used,
                    pinned=is_pinned(layout, commit), leased=commit in leased,
                    in_progress=in_progress(layout, commit, stale_after),
                    held_by=protect.get((layout.repo_id, commit)),
                ))
    return out


# -- plan (pure) -------------------------------------------------------------------------------------
def _live_blobs(revs: Iterable[RevisionState]) -> dict[str, int]:
    out: dict[str, int] = {}
    for r in revs:
        out.update(dict(r.blobs))
    return out


def plan_gc(
    revisions: list[RevisionState],
    *,
    max_size: int | None = None,
    max_age: float | None = None,
    keep_last: int | None = None,
    now: float | None = None,
    extra_size: int = 0,
) -> GcPlan:
    """Choose what to remove. ``extra_size``: bytes on disk that are not snapshot blobs (partials)."""
    now = time.time() if now is None else now
    removing: dict[tuple[str, str, str], str] = {}
    kept = tuple((r, r.protected_by) for r in revisions if r.protected_by)
    candidates = [r for r in revisions if not r.protected_by]

    if max_age is not None:
        for r in candidates:
            if now - r.last_used > max_age:
                removing[r.key] = f"unused for {_dur(now - r.last_used)} (max age {_dur(max_age)})"
    if keep_last is not None:
        by_repo: dict[tuple[str, str], list[RevisionState]] = {}
        for r in revisions:
            by_repo.setdefault((str(r.cache_dir), r.repo_id), []).append(r)
        for revs in by_repo.values():
            newest_first = sorted(revs, key=lambda r: r.last_used, reverse=True)
            for r in newest_first[keep_last:]:
                if not r.protected_by and r.key not in removing:
                    removing[r.key] = f"older than the {keep_last} most recently used revision(s) of {r.repo_id}"

    size_before = sum(_live_blobs(revisions).values()) + extra_size

    def size_without(keys: set[tuple[str, str, str]]) -> int:
        return sum(_live_blobs(r for r in revisions if r.key not in keys).values()) + extra_size

    notes: list[str] = []
    if max_size is not None:
        current = size_without(set(removing))
        for r in sorted(candidates, key=lambda r: r.last_used):
            if current <= max_size:
                break
            if r.key in removing:
                continue
            removing[r.key] = (f"cache over budget ({human_size(current)} > {human_size(max_size)}); "
                               f"least recently used")
            current = size_without(set(removing))
        if current > max_size:
            notes.append(f"still {human_size(current)} > {human_size(max_size)}: what is left is pinned, leased "
                         "or in use")

    # freed per revision, in removal order: a shared blob is freed (and counted) when its last user goes
    order = sorted((r for r in revisions if r.key in removing), key=lambda r: r.last_used)
    gone: set[tuple[str, str, str]] = set()
    counted: set[str] = set()
    decisions = []
    for r in order:
        gone.add(r.key)
        remaining = _live_blobs(x for x in revisions if x.key not in gone)
        freed = {p: s for p, s in r.blobs if p not in remaining and p not in counted}
        counted |= set(freed)
        decisions.append(GcDecision(r, removing[r.key], sum(freed.values())))
    size_after = size_before - sum(d.freed for d in decisions)
    return GcPlan(tuple(decisions), kept, size_before, size_after, max_size, tuple(notes))


def _dur(seconds: float) -> str:
    for unit, n in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= n:
            return f"{seconds / n:.1f}{unit}"
    return f"{seconds:.0f}s"


# -- execute ------------------------------------------------------------------------------------------
def execute_gc(plan: GcPlan, stale_after: float = 30.0, protect: Protection | None = None) -> list[str]:
    """Remove the planned revisions, re-checking protection just before each (it may have changed).

    ``protect``: a fresh look at what is held from outside (pods listed again just before)."""
    skipped = []
    protect = protect or {}
    for d in plan.remove:
        r = d.revision
        layout = RepoLayout(r.cache_dir, r.repo_type, r.repo_id)
        try:
            with repo_guard(layout, stale_after):  # no download or lease can claim it between check and removal
                if ((r.repo_id, r.commit) in protect or is_pinned(layout, r.commit)
                        or active_leases(layout, r.commit) or in_progress(layout, r.commit, stale_after)):
                    skipped.append(f"{r.repo_id}@{r.commit[:12]}: became protected, kept")
                    continue
                # never the whole repo folder: a download of another revision may be starting in it
                execute_removal(layout, plan_removal(layout, [r.commit], keep_folder=True))
                for sub in ("used", "pins"):
                    confined_unlink(layout.state / sub / r.commit, layout.cache_dir)
        except CacheError as exc:  # one broken repo (a planted FIFO at its lock folder…) never stops the rest
            skipped.append(f"{r.repo_id}@{r.commit[:12]}: kept: {exc}")
    return skipped


def sweep(cache_dir: Path, *, partial_max_age: float = PARTIAL_MAX_AGE, stale_after: float = 30.0,
          dry_run: bool = False) -> dict[str, int]:
    """Stale partial downloads, dead locks, dead markers, expired leases, orphan blobs."""
    counts = {"partials": 0, "partial_bytes": 0, "locks": 0, "markers": 0, "leases": 0, "orphan_blobs": 0,
              "orphan_bytes": 0}
    if not cache_dir.is_dir():
        return counts
    for layout in repo_layouts(cache_dir):
        blobs_ok = layout.blobs.is_dir() and not layout.blobs.is_symlink() and is_inside(layout.blobs, cache_dir)
        now = fs_now(layout.blobs) if blobs_ok else time.time()
        live_locks = set()
        for lock_entry in safe_iterdir(layout.locks):
            if not lock_entry.name.endswith(".mc-lock"):
                continue
            lock = Path(lock_entry.path)
            info = read_lock(lock)
            if info is not None and lock_is_dead(info, now, stale_after):
                counts["locks"] += 1
                if not dry_run:
                    confined_unlink(lock, cache_dir)
            elif info is not None:
                live_locks.add(lock.name.split(".")[0])
        commits = layout.commits()
        referenced = {p for c in commits for p, _ in _snapshot_blobs(layout, c)}
        busy = any(in_progress(layout, c, stale_after) for c in commits)
        for f_entry in safe_iterdir(layout.blobs) if blobs_ok else ():
            f = Path(f_entry.path)
            etag = f.name.split(".")[0]
            try:
                st = f.lstat()
            except OSError:
                continue
            if stat.S_ISDIR(st.st_mode):
                continue
            if f.name.endswith((".incomplete", ".mc.state")):
                done = (layout.blobs / etag).exists()
                if etag in live_locks or (not done and now - st.st_mtime < partial_max_age):
                    continue
                counts["partials"] += 1
                counts["partial_bytes"] += st.st_size if stat.S_ISREG(st.st_mode) else 0
            elif "." not in f.name and not busy and str(f) not in referenced and etag not in live_locks:
                if now - st.st_mtime < 60:  # just installed by a running download: not an orphan yet
                    continue
                if str(Path(os.path.realpath(layout.blobs)) / f.name) in referenced:
                    continue
                counts["orphan_blobs"] += 1
                counts["orphan_bytes"] += st.st_size if stat.S_ISREG(st.st_mode) else 0
            else:
                continue
            if not dry_run:
                confined_unlink(f, cache_dir)
        if not dry_run:
            _sweep_temps(layout, now)
            counts["markers"] += sweep_dead_markers(layout, stale_after)
            counts["leases"] += sweep_expired(layout)
    return counts


def _sweep_temps(layout: RepoLayout, now: float) -> None:
    """Temp files a killed writer left: in ``.modelcache/tmp/`` and (from older versions) under ``refs/``."""
    stale = []
    for e in safe_iterdir(layout.tmp):
        stale.append(Path(e.path))
    if layout.refs.is_dir() and not layout.refs.is_symlink():
        for root, dirs, files in os.walk(layout.refs, followlinks=False):
            stale.extend(Path(root) / f for f in files if f.startswith(".") and f.endswith(".tmp"))
    for p in stale:
        try:
            if now - p.lstat().st_mtime > TMP_MAX_AGE:
                confined_unlink(p, layout.cache_dir)
        except OSError:
            continue


def read_gc_freed(cache_dir: Path) -> int:
    """All-time bytes freed by ``gc`` in this root (0 when unknown; junk is warned about, ignored)."""
    from .layout import root_state

    data = read_state_or_none(root_state(cache_dir) / "gc-stats.json", max_bytes=4096, max_depth=2)
    value = data.get("freed_bytes", 0) if isinstance(data, dict) else 0
    return value if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 1 << 62 else 0


def record_gc_freed(cache_dir: Path, freed: int) -> None:
    """Add to the all-time bytes freed in this root (read by ``serve``'s ``/metrics``)."""
    import json

    from ..errors import CacheError
    from ..files import atomic_write_bytes
    from .layout import root_state

    path = root_state(cache_dir) / "gc-stats.json"
    total = read_gc_freed(cache_dir)
    try:
        atomic_write_bytes(path, json.dumps({"freed_bytes": total + freed, "at": time.time()}).encode(), fsync=False,
                           root=cache_dir)
    except (OSError, CacheError):
        pass
