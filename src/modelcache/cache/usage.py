"""Last use per revision, kept in ``<repo>/.modelcache/used/<commit>`` (atime lies on noatime mounts).

Recording is best effort: a read-only mount (an engine pod's) must not turn a ready check
into a failure, so write errors are swallowed.
"""

from __future__ import annotations

import math
import time

from .layout import RepoLayout
from ..errors import CacheError
from ..files import CorruptState, atomic_write_bytes, read_bounded, warn_corrupt

__all__ = ["ThrottledUseRecorder", "last_used", "record_use"]


def record_use(layout: RepoLayout, commit: str, now: float | None = None) -> bool:
    """Record that ``commit`` was used at ``now`` (default: the current time); False when it cannot be written.

    Best effort: never raises for a read-only or full disk.
    """
    try:
        atomic_write_bytes(layout.state / "used" / commit, repr(now or time.time()).encode(), root=layout.cache_dir,
                           tmp_dir=layout.tmp)
        return True
    except (OSError, CacheError):
        return False


def last_used(layout: RepoLayout, commit: str) -> float | None:
    """When ``commit`` was last used (epoch seconds), or None when never recorded or unreadable."""
    path = layout.state / "used" / commit
    try:
        value = float(read_bounded(path, 64).decode("ascii"))
        if not math.isfinite(value) or value < 0:
            raise ValueError(value)
        return value
    except (FileNotFoundError, NotADirectoryError):
        return None
    except (OSError, ValueError, UnicodeDecodeError):
        warn_corrupt(CorruptState(path, "not a time stamp modelcache wrote"))
        return None


class ThrottledUseRecorder:
    """``record_use`` at most once per ``interval`` seconds per (repo, commit): for the server's hot path."""

    def __init__(self, interval: float = 60.0) -> None:
        self.interval = interval
        self._last: dict[tuple[str, str], float] = {}

    def __call__(self, layout: RepoLayout, commit: str) -> None:
        now = time.time()
        key = (str(layout.folder), commit)
        if now - self._last.get(key, 0.0) >= self.interval:
            self._last[key] = now
            record_use(layout, commit, now)
