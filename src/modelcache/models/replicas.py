"""Replicas: an engine that serves a model holds a lease on the revision it loaded.

The lease's holder says who it is and which card it loaded::

    replica:<namespace>:<name>:<replica id>:<short card checksum>

So replicas need nothing but the lease machinery: they renew while they run, expire when they
die, and GC never removes what a live replica uses. ``live_replicas`` finds them in every repo
of a cache (a replica may run another commit than the one registered: that is the skew to see).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from ..cache.layout import RepoLayout, repo_layouts
from ..cache.leases import LeaseInfo, active_leases
from ..errors import InvalidInput
from .checksum import SHORT, short
from .names import validate_name, validate_namespace, validate_replica

__all__ = ["PREFIX", "Replica", "live_replicas", "parse_holder", "replica_holder"]

PREFIX = "replica"
MAX_HOLDER = 200  # leases keep at most this many characters of a holder
_ROOM = MAX_HOLDER - len(PREFIX) - 4 - SHORT


def replica_holder(namespace: str, name: str, replica: str, checksum: str) -> str:
    """The lease holder of a replica: ``replica:<namespace>:<name>:<replica id>:<short card checksum>``.

    InvalidInput if a part is invalid, or the whole is longer than ``MAX_HOLDER`` characters.
    """
    validate_namespace(namespace)
    validate_name(name)
    validate_replica(replica)
    holder = f"{PREFIX}:{namespace}:{name}:{replica}:{short(checksum)}"
    if len(holder) > MAX_HOLDER:
        raise InvalidInput(f"replica id {replica!r} is too long for model {name!r} in namespace {namespace!r}",
                           f"namespace, name and replica id together must fit in {_ROOM} characters")
    return holder


def parse_holder(holder: str) -> tuple[str, str, str, str] | None:
    """``(namespace, name, replica, short checksum)`` of a replica lease's holder; None for any other."""
    parts = holder.split(":")
    if len(parts) != 5 or parts[0] != PREFIX:
        return None
    _, namespace, name, replica, card = parts
    if len(card) != SHORT or not all(c in "0123456789abcdef" for c in card):
        return None
    try:
        validate_namespace(namespace)
        validate_name(name)
        validate_replica(replica)
    except InvalidInput:
        return None
    return namespace, name, replica, card


@dataclass(frozen=True)
class Replica:
    """An engine serving a registered name: its replica id, the card it loaded, and its live lease."""

    namespace: str
    name: str
    replica: str
    card: str
    """The short card checksum the replica loaded."""
    lease: LeaseInfo

    def to_dict(self, now: float | None = None) -> dict[str, object]:
        """JSON-ready dict: the replica's fields, its lease's ``repo_id``/``commit``/``lease_id``/``host``/``pid``.

        ``since``: when the lease was taken (epoch seconds); ``expires_in``: seconds it has left at ``now``.
        """
        le = self.lease
        return {"replica": self.replica, "namespace": self.namespace, "name": self.name, "card": self.card,
                "repo_id": le.repo_id, "commit": le.commit, "lease_id": le.lease_id, "host": le.host,
                "pid": le.pid, "since": le.created, "expires_in": round(le.expires - (now or time.time()), 1)}


def _layouts(cache_dir: Path) -> list[RepoLayout]:
    return repo_layouts(Path(cache_dir))


def live_replicas(cache_dir: Path, now: float | None = None) -> list[Replica]:
    """Every replica with a live lease anywhere in the cache, oldest first."""
    now = now or time.time()
    out = []
    for layout in _layouts(Path(cache_dir)):
        for lease in active_leases(layout, now=now):
            parsed = parse_holder(lease.holder)
            if parsed is not None:
                out.append(Replica(*parsed, lease))
    return sorted(out, key=lambda r: r.lease.created)
