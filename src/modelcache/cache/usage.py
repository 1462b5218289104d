"""Last use per revision, kept in ``<repo>/.modelcache/used/<commit>`` (atime lies on noatime mounts).

Recording is best effort: a read-only mount (an engine pod's) must not turn a ready check
into a failure, so write errors are swallowed.
"""

from __future__ import annotations

import time

from .layout import RepoLayout, atomic_write_bytes

__all__ = ["last_used", "record_use"]


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
