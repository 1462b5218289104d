"""Markers for "a download is working on this revision right now" (GC leaves it alone).

Each process working on a commit holds its own heartbeating marker (a ``FileLock`` at a
unique path), so any number of processes can mark the same revision; a marker whose process
died is recognised as dead like any lock.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..errors import CacheError
from ..files import confined_unlink, is_inside, safe_iterdir
from .layout import RepoLayout
from .locks import FileLock, fs_now, lock_is_dead, read_lock

__all__ = ["activity", "in_progress", "repo_guard", "sweep_dead_markers"]


@contextmanager
def repo_guard(layout: RepoLayout, stale_after: float = 30.0, timeout: float = 120.0) -> Iterator[None]:
    """Make "GC checks a revision is unprotected, then removes it" atomic against "a download
    marks it in progress" and "a lease is taken": all three happen under this short lock."""
    lock = FileLock(layout.repo_lock, purpose="repo guard", stale_after=stale_after, heartbeat=1.0,
                    root=layout.cache_dir)
    if not lock.acquire(timeout=timeout, poll=0.02):
        raise CacheError(f"{layout.repo_id}: the repo lock {layout.repo_lock} is held for over {timeout:.0f}s",
                         "is a `modelcache gc` stuck? it is taken over automatically once its holder dies")
    try:
        yield
    finally:
        lock.release()


def activity(layout: RepoLayout, commit: str, stale_after: float = 30.0) -> FileLock:
    """A marker to ``try_acquire()`` at the start of work on ``commit`` and ``release()`` at the end."""
    return FileLock(layout.activity_marker(commit, uuid.uuid4().hex), purpose=f"download {commit}",
                    stale_after=stale_after, root=layout.cache_dir)


def _markers(layout: RepoLayout, commit: str | None = None) -> list[Path]:
    folder = layout.state / "active"
    if not is_inside(folder, layout.cache_dir):
        return []  # linked out of the cache: not ours to read (nor to probe the clock in)
    return [Path(e.path) for e in safe_iterdir(folder) if commit is None or e.name.startswith(commit + ".")]


def in_progress(layout: RepoLayout, commit: str, stale_after: float = 30.0) -> bool:
    """True when some live process is working on ``commit`` (a marker heartbeated within ``stale_after`` seconds)."""
    markers = _markers(layout, commit)
    if not markers:
        return False
    now = fs_now(markers[0].parent)
    return any((info := read_lock(p)) is not None and not lock_is_dead(info, now, stale_after) for p in markers)


def sweep_dead_markers(layout: RepoLayout, stale_after: float = 30.0) -> int:
    """Remove the markers of dead processes in this repo; returns how many were removed."""
    markers = _markers(layout)
    if not markers:
        return 0
    now = fs_now(markers[0].parent)
    n = 0
    for p in markers:
        info = read_lock(p)
        if info is not None and lock_is_dead(info, now, stale_after) and confined_unlink(p, layout.cache_dir):
            n += 1
    return n
