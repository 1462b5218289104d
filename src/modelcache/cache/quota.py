"""A size budget per cache root, enforced at download time and by ``gc``.

Stored in ``<cache>/.locks/modelcache/quota.json`` (inside ``.locks/``, which HF's scanner
skips). Several tenants are several cache roots, each with its own budget.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path

from .._format import human_size
from ..errors import CacheError, InvalidInput
from ..files import atomic_write_bytes, read_state_or_none
from .layout import repo_layouts, root_state

__all__ = ["Usage", "cache_usage", "check_room", "read_budget", "write_budget"]


def _quota_file(cache_dir: Path) -> Path:
    return root_state(cache_dir) / "quota.json"


def read_budget(cache_dir: Path) -> int | None:
    """The budget of this root in bytes; None when unset (or the file is junk: warned, ignored)."""
    path = _quota_file(cache_dir)
    data = read_state_or_none(path, max_bytes=4096, max_depth=2,
                              hint=f"set the budget again (`modelcache quota set SIZE`, or `--clear`), or remove {path}")
    value = data.get("max_size") if isinstance(data, dict) else None
    if isinstance(value, int) and not isinstance(value, bool) and 0 < value < 1 << 62:
        return value
    if value is not None:
        from ..files import CorruptState, warn_corrupt

        warn_corrupt(CorruptState(_quota_file(cache_dir), f"max_size {str(value)[:40]!r} is not a size in bytes",
                                  "set it again with `modelcache quota set SIZE` (or `--clear`)"))
    return None


def write_budget(cache_dir: Path, max_size: int | None) -> None:
    """Set the size budget of ``cache_dir`` to ``max_size`` bytes (None: no budget), atomically.

    Raises ``InvalidInput`` for a size that is not positive.
    """
    if max_size is not None and max_size <= 0:
        raise InvalidInput(f"invalid budget {max_size}", "give a positive size such as 500GiB, or --clear")
    atomic_write_bytes(_quota_file(cache_dir), json.dumps({"max_size": max_size}).encode(), root=cache_dir)


@dataclass(frozen=True)
class Usage:
    """Bytes used under a cache root, its budget (None: none) and the disk's free bytes."""

    used: int
    """Bytes of blobs and partial downloads under every repo of the root."""
    budget: int | None
    disk_free: int

    def to_dict(self) -> dict[str, object]:
        """``{"used", "budget", "disk_free"}``."""
        return {"used": self.used, "budget": self.budget, "disk_free": self.disk_free}


def _du(folder: Path) -> int:
    total = 0
    seen: set[tuple[int, int]] = set()  # a partial has two names (shared + its writer's): count it once
    if folder.is_symlink():
        return 0
    for root, _dirs, files in os.walk(folder):
        for f in files:
            try:
                st = os.lstat(os.path.join(root, f))
            except OSError:
                continue
            if stat.S_ISREG(st.st_mode) and (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                total += st.st_blocks * 512 if st.st_blocks else st.st_size
    return total


def cache_usage(cache_dir: Path) -> Usage:
    """How much ``cache_dir`` uses (blobs and partials of every repo), its budget and the free disk space.

    Walks every blob folder. Free space is 0 when it cannot be read.
    """
    used = 0
    if cache_dir.is_dir():
        for layout in repo_layouts(cache_dir):
            used += _du(layout.blobs)
    probe = cache_dir  # a cache not created yet: the disk of the nearest folder that exists
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        free = shutil.disk_usage(probe).free
    except OSError:
        free = 0
    return Usage(used, read_budget(cache_dir), free)


def check_room(cache_dir: Path, needed: int, repo_id: str) -> Usage:
    """Refuse, before any byte moves, a download that cannot fit the budget or the disk."""
    usage = cache_usage(cache_dir)
    if usage.budget is not None and usage.used + needed > usage.budget:
        raise CacheError(
            f"{repo_id} needs {human_size(needed)} but the cache at {cache_dir} uses {human_size(usage.used)} "
            f"of its {human_size(usage.budget)} budget ({human_size(max(0, usage.budget - usage.used))} left)",
            (f"free space with `modelcache gc --max-size {human_size(usage.budget - needed).replace(' ', '')}`, "
             "or raise the budget with `modelcache quota set SIZE`") if needed < usage.budget else
            f"the budget is smaller than the download: raise it with `modelcache quota set SIZE` "
            f"(at least {human_size(needed).replace(' ', '')}), or download less (--profile, --include/--exclude)",
        )
    if needed > usage.disk_free:
        raise CacheError(
            f"{repo_id} needs {human_size(needed)} but the disk holding {cache_dir} has {human_size(usage.disk_free)} free",
            "free space (`modelcache gc`, `modelcache rm`) or use a bigger volume",
        )
    return usage
