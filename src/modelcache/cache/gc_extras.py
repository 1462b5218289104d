"""What GC adds around its plan (``gc.py``): holds from outside the cache, and empty repo folders.

- ``registered_revisions``: the model registry's revisions (``models add``), protected like pins.
- ``remove_empty_repos``: a repo folder with no revision and no blob left goes too (``ls`` would
  show it ``empty``, ``hf cache ls`` with size 0).
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from ..errors import CacheError
from .activity import in_progress, repo_guard
from .layout import repo_layouts, root_state
from .leases import active_leases
from ..files import CorruptState, read_json_state

__all__ = ["registered_revisions", "remove_empty_repos"]


def registered_revisions(cache_dir: Path) -> dict[tuple[str, str], str]:
    """Revisions the model registry (``models add``) points at, protected like pins.

    Raises ``CacheError`` when the registry exists but cannot be read: GC must not guess.
    """
    path = root_state(cache_dir) / "models.json"
    hint = "gc protects registered revisions and will not run without them; restore or fix the registry"
    try:  # bounded, regular file only (a link or FIFO is never followed or opened), bounded nesting
        data = read_json_state(path, max_bytes=64 << 20, max_depth=16, hint=hint)
    except CorruptState as exc:
        raise CacheError(f"cannot read the model registry {path}: {exc.why}", hint) from None
    if data is None:
        return {}
    try:
        out: dict[tuple[str, str], str] = {}
        for m in data["models"]:  # type: ignore[index]
            out.setdefault((str(m["repo_id"]), str(m["commit"])),
                           f"registered as model {m['name']} (namespace {m['namespace']})")
        return out
    except (KeyError, TypeError) as exc:
        raise CacheError(f"the model registry {path} is unreadable ({type(exc).__name__})", hint) from None


def remove_empty_repos(cache_dir: Path, *, stale_after: float = 30.0, min_age: float = 60.0,
                       dry_run: bool = False) -> list[str]:
    """Repo folders with no revision and no blob left (what GC leaves of a fully collected repo).

    Kept when anything may be starting in it: a lease, a live in-progress marker, a blob or a
    partial, or a folder created in the last ``min_age`` seconds. Checked under the repo guard.
    """
    removed: list[str] = []
    if not cache_dir.is_dir():
        return removed
    for layout in repo_layouts(cache_dir):
        if layout.commits() or _has_entries(layout.blobs):
            continue
        with repo_guard(layout, stale_after):
            try:  # a folder a download has just created (its own mtime: GC's removals do not touch it)
                fresh = time.time() - layout.folder.stat().st_mtime < min_age
            except OSError:
                continue
            active = layout.state / "active"
            if (fresh or layout.commits() or _has_entries(layout.blobs) or active_leases(layout)
                    or any(in_progress(layout, p.name.split(".")[0], stale_after) for p in _entries(active))):
                continue
            removed.append(layout.repo_id)
            if not dry_run:
                shutil.rmtree(layout.folder, ignore_errors=True)  # rmtree never follows links inside
    return removed


def _entries(folder: Path) -> list[Path]:
    try:
        return list(folder.iterdir())
    except OSError:
        return []


def _has_entries(folder: Path) -> bool:
    return bool(_entries(folder))
