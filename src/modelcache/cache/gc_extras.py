"""What GC adds around its plan (``gc.py``): holds from outside the cache, and empty repo folders.

- ``registered_revisions``: the model registry's revisions (``models add``), protected like pins.
- ``remove_empty_repos``: a repo folder with no revision and no blob left goes too (``ls`` would
  show it ``empty``, ``hf cache ls`` with size 0).
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import time
from pathlib import Path

from ..errors import CacheError
from .activity import in_progress, repo_guard
from .layout import RepoLayout, parse_folder_name, root_state
from .leases import active_leases
from .loadable import read_regular

__all__ = ["registered_revisions", "remove_empty_repos"]


def registered_revisions(cache_dir: Path) -> dict[tuple[str, str], str]:
    """Revisions the model registry (``models add``) points at, protected like pins.

    Raises ``CacheError`` when the registry exists but cannot be read: GC must not guess.
    """
    path = root_state(cache_dir) / "models.json"
    try:
        st = os.lstat(path)
        if not stat.S_ISREG(st.st_mode):  # a link or a FIFO planted on the volume: never followed or opened
            raise OSError(0, "not a regular file")
        raw = read_regular(str(path), st.st_size)
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise CacheError(f"cannot read the model registry {path}: {exc.strerror or exc}",
                         "gc protects registered revisions and will not run without it; fix the mount") from None
    try:
        out: dict[tuple[str, str], str] = {}
        for m in json.loads(raw)["models"]:
            out.setdefault((str(m["repo_id"]), str(m["commit"])),
                           f"registered as model {m['name']} (namespace {m['namespace']})")
        return out
    except (ValueError, KeyError, TypeError) as exc:
        raise CacheError(f"the model registry {path} is unreadable ({type(exc).__name__})",
                         "gc protects registered revisions and will not run without it; restore the registry") from None


def remove_empty_repos(cache_dir: Path, *, stale_after: float = 30.0, min_age: float = 60.0,
                       dry_run: bool = False) -> list[str]:
    """Repo folders with no revision and no blob left (what GC leaves of a fully collected repo).

    Kept when anything may be starting in it: a lease, a live in-progress marker, a blob or a
    partial, or a folder created in the last ``min_age`` seconds. Checked under the repo guard.
    """
    removed: list[str] = []
    if not cache_dir.is_dir():
        return removed
    for entry in sorted(cache_dir.iterdir()):
        parsed = parse_folder_name(entry.name)
        if parsed is None or entry.is_symlink() or not entry.is_dir():
            continue
        layout = RepoLayout(cache_dir, *parsed)
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
