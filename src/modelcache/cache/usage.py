"""Last use per revision, kept in ``<repo>/.modelcache/used/<commit>`` (atime lies on noatime mounts).

Recording is best effort: a read-only mount (an engine pod's) must not turn a ready check
into a failure, so write errors are swallowed.
"""

from __future__ import annotations

import time

from .layout import RepoLayout
from ..files import atomic_write_bytes

__all__ = ["ThrottledUseRecorder", "last_used", "record_use"]


def record_use(layout: RepoLayout, commit: str, now: float | None = None) -> bool:
    try:
        atomic_write_bytes(layout.state / "used" / commit, repr(now or time.time()).encode())
        return True
    except OSError:
        return False


def last_used(layout: RepoLayout, commit: str) -> float | None:
    try:
        return float((layout.state / "used" / commit).read_text())
    except (OSError, ValueError):
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
