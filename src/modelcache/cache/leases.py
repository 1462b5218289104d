"""Leases and pins: what GC must never remove.

- A *lease* says "revision C of repo R is in use by H until T": a small JSON file in
  ``<repo>/.modelcache/leases/<commit>/<lease id>.json``. Holders renew it; when a holder dies it
  stops renewing and the lease expires on its own. ``Lease`` is a context manager that renews
  in the background.
- A *pin* says "never collect revision C": ``<repo>/.modelcache/pins/<commit>``.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from ..errors import InvalidInput, NotCached
from .layout import RepoLayout
from ..files import atomic_write_bytes, confined_unlink, read_state_or_none
from ..validation import is_commit

__all__ = ["Lease", "LeaseInfo", "acquire_lease", "active_leases", "is_pinned", "list_pins", "pin", "release_lease",
           "renew_lease", "unpin"]

_ID_CHARS = set("0123456789abcdef")


@dataclass(frozen=True)
class LeaseInfo:
    """One lease as recorded: who holds which revision until when (``expires``, ``created``: epoch seconds)."""

    lease_id: str
    repo_id: str
    commit: str
    holder: str
    expires: float
    created: float
    host: str
    pid: int

    def to_dict(self) -> dict[str, object]:
        """The lease's fields as a dict (the JSON written to the lease file)."""
        return dict(self.__dict__)

    def alive(self, now: float | None = None) -> bool:
        """True while the lease has not expired at ``now`` (default: the current time)."""
        return self.expires > (now or time.time())


def _lease_path(layout: RepoLayout, commit: str, lease_id: str) -> Path:
    if not lease_id or not set(lease_id) <= _ID_CHARS or len(lease_id) > 64:
        raise InvalidInput(f"invalid lease id {lease_id!r}", "use the id printed by `modelcache lease acquire`")
    return layout.state / "leases" / commit / f"{lease_id}.json"


def _write(layout: RepoLayout, info: LeaseInfo) -> None:
    atomic_write_bytes(_lease_path(layout, info.commit, info.lease_id), json.dumps(info.to_dict()).encode(),
                       fsync=False, root=layout.cache_dir, tmp_dir=layout.tmp)


def acquire_lease(layout: RepoLayout, commit: str, holder: str, ttl: float, now: float | None = None) -> LeaseInfo:
    """Take a lease on a revision that is in the cache now (checked under the repo guard, so a
    GC cannot remove it between the check and the lease)."""
    from .activity import repo_guard

    if ttl <= 0:
        raise InvalidInput(f"invalid lease ttl {ttl}", "give a positive number of seconds")
    with repo_guard(layout):
        if not layout.snapshot(commit).is_dir():
            raise NotCached(f"{layout.repo_id}@{commit[:12]} is not in the cache (removed meanwhile?)",
                            "download it again, then take the lease")
        now = now or time.time()
        info = LeaseInfo(uuid.uuid4().hex, layout.repo_id, commit, holder[:200], now + ttl, now,
                         socket.gethostname(), os.getpid())
        _write(layout, info)
    return info


def _read(path: Path) -> LeaseInfo | None:
    """The lease in ``path``; None (with a warning for junk) when it is not one modelcache wrote."""
    d = read_state_or_none(path, max_bytes=64 * 1024, max_depth=4)
    if not isinstance(d, dict):
        return None
    try:
        lease_id, commit = d["lease_id"], d["commit"]
        expires, created, pid = d["expires"], d["created"], d.get("pid", -1)
        if not (isinstance(lease_id, str) and path.name == f"{lease_id}.json" and isinstance(commit, str)
                and is_commit(commit) and path.parent.name == commit):
            raise ValueError("names another lease")
        if not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in (expires, created)):
            raise ValueError("times are not numbers")
        if not isinstance(pid, int) or isinstance(pid, bool):
            pid = -1
        return LeaseInfo(lease_id, str(d["repo_id"])[:200], commit, str(d["holder"])[:200], float(expires),
                         float(created), str(d.get("host", ""))[:200], pid)
    except (KeyError, TypeError, ValueError, OverflowError):
        from ..files import CorruptState, warn_corrupt

        warn_corrupt(CorruptState(path, "not a lease modelcache wrote"))
        return None


def find_lease(layout: RepoLayout, lease_id: str) -> LeaseInfo | None:
    """The lease ``lease_id`` of this repo (any revision), or None."""
    _lease_path(layout, "0" * 40, lease_id)  # validates the id before it becomes a glob pattern
    root = layout.state / "leases"
    for path in root.glob(f"*/{lease_id}.json") if root.is_dir() else []:
        return _read(path)
    return None


def renew_lease(layout: RepoLayout, lease_id: str, ttl: float, now: float | None = None) -> LeaseInfo:
    """Extend lease ``lease_id`` to ``ttl`` seconds from now and return it.

    Raises ``InvalidInput`` when the repo has no such lease (it was released, or never existed).
    """
    info = find_lease(layout, lease_id)
    if info is None:
        raise InvalidInput(f"no lease {lease_id} on {layout.repo_id}", "see `modelcache lease ls`")
    now = now or time.time()
    renewed = LeaseInfo(**{**info.to_dict(), "expires": now + ttl})  # type: ignore[arg-type]
    _write(layout, renewed)
    return renewed


def release_lease(layout: RepoLayout, lease_id: str) -> bool:
    """Remove lease ``lease_id``; False when there was no such lease."""
    info = find_lease(layout, lease_id)
    if info is None:
        return False
    confined_unlink(_lease_path(layout, info.commit, lease_id), layout.cache_dir)
    return True


def all_leases(layout: RepoLayout) -> list[LeaseInfo]:
    root = layout.state / "leases"
    if not root.is_dir():
        return []
    return sorted((i for p in root.glob("*/*.json") if (i := _read(p)) is not None), key=lambda i: i.created)


def active_leases(layout: RepoLayout, commit: str | None = None, now: float | None = None) -> list[LeaseInfo]:
    """The unexpired leases of this repo (of ``commit`` only, when given)."""
    now = now or time.time()
    return [i for i in all_leases(layout) if i.alive(now) and (commit is None or i.commit == commit)]


def sweep_expired(layout: RepoLayout, now: float | None = None) -> int:
    now = now or time.time()
    n = 0
    for info in all_leases(layout):
        if not info.alive(now):
            confined_unlink(_lease_path(layout, info.commit, info.lease_id), layout.cache_dir)
            n += 1
    return n


class Lease:
    """Hold a lease for a ``with`` block, renewing it every ``ttl / 3`` seconds."""

    def __init__(self, layout: RepoLayout, commit: str, holder: str, ttl: float = 60.0,
                 existing: LeaseInfo | None = None) -> None:
        self.layout, self.commit, self.holder, self.ttl = layout, commit, holder, ttl
        self.info: LeaseInfo | None = existing
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Lease:
        if self.info is None:
            self.info = acquire_lease(self.layout, self.commit, self.holder, self.ttl)

        def renew() -> None:
            while not self._stop.wait(self.ttl / 3):
                try:
                    renew_lease(self.layout, self.info.lease_id, self.ttl)  # type: ignore[union-attr]
                except (OSError, InvalidInput):
                    pass

        self._thread = threading.Thread(target=renew, name="mc-lease", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=2)
        if self.info:
            release_lease(self.layout, self.info.lease_id)


def pin(layout: RepoLayout, commit: str, note: str = "") -> None:
    """Pin ``commit`` so GC never removes it; ``note`` says why. Pinning again replaces the note."""
    atomic_write_bytes(layout.state / "pins" / commit, json.dumps({"note": note, "at": time.time()}).encode(),
                       root=layout.cache_dir, tmp_dir=layout.tmp)


def unpin(layout: RepoLayout, commit: str) -> bool:
    """Remove the pin of ``commit``; False when it was not pinned."""
    p = layout.state / "pins" / commit
    existed = os.path.lexists(p)
    confined_unlink(p, layout.cache_dir)
    return existed


def is_pinned(layout: RepoLayout, commit: str) -> bool:
    """True when ``commit`` is pinned."""
    return (layout.state / "pins" / commit).exists()


def list_pins(layout: RepoLayout) -> list[str]:
    """The pinned commits of this repo, sorted."""
    d = layout.state / "pins"
    return sorted(p.name for p in d.iterdir() if is_commit(p.name)) if d.is_dir() and not d.is_symlink() else []
