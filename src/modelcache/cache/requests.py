"""What was asked of each revision: the profile and ``--include``/``--exclude`` of every download.

Kept in ``<repo>/.modelcache/requests/<commit>.json`` (atomic writes), so ``check``, ``ls`` and
``verify`` judge a filtered download by what it asked for, not by every file of the commit.
Anything unreadable (junk JSON from a co-tenant, a FIFO, a link) reads as "nothing recorded",
which makes the judges conservative (the whole commit was asked), never laxer.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ..errors import CacheError
from ..files import atomic_write_bytes
from ..profiles import PROFILES, select
from .layout import RepoLayout

__all__ = ["Request", "asked_paths", "describe", "read_requests", "record_request"]

_MAX_REQUESTS = 32
_MAX_BYTES = 256 * 1024


@dataclass(frozen=True)
class Request:
    """One download's ask: a profile and its filters (huggingface_hub's allow/ignore patterns)."""

    profile: str
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, object]:
        """``{"profile", "include", "exclude"}``."""
        return {"profile": self.profile, "include": list(self.include), "exclude": list(self.exclude)}

    @property
    def filtered(self) -> bool:
        """True when the download had ``--include`` or ``--exclude`` patterns."""
        return bool(self.include or self.exclude)


def _path(layout: RepoLayout, commit: str) -> str:
    return str(layout.state / "requests" / f"{commit}.json")


def read_requests(layout: RepoLayout, commit: str) -> tuple[Request, ...]:
    """The recorded asks for ``commit`` (oldest first); empty when none or unreadable."""
    path = _path(layout, commit)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return ()
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return ()
        data = json.loads(os.read(fd, _MAX_BYTES))
        out = []
        for item in data["requests"][:_MAX_REQUESTS]:
            profile = item["profile"]
            inc, exc = item.get("include", []), item.get("exclude", [])
            if profile not in PROFILES or not all(isinstance(p, str) for p in [*inc, *exc]):
                return ()
            out.append(Request(profile, tuple(inc), tuple(exc)))
        return tuple(out)
    except (OSError, ValueError, KeyError, TypeError, AttributeError, RecursionError):
        return ()
    finally:
        os.close(fd)


def record_request(layout: RepoLayout, commit: str, profile: str, include: Sequence[str] = (),
                   exclude: Sequence[str] = ()) -> bool:
    """Add an ask to ``commit``'s record (idempotent). Best effort: False when it cannot be written."""
    new = Request(profile, tuple(include), tuple(exclude))
    old = read_requests(layout, commit)
    if new in old:
        return True
    if not new.filtered:  # an unfiltered ask of a profile covers every filtered one of it
        old = tuple(r for r in old if r.profile != profile)
    kept = [*old, new][-_MAX_REQUESTS:]
    body = json.dumps({"format_version": 1, "requests": [r.to_dict() for r in kept]}, indent=1).encode()
    try:
        atomic_write_bytes(layout.state / "requests" / f"{commit}.json", body, fsync=False, root=layout.cache_dir,
                           tmp_dir=layout.tmp)
        return True
    except (OSError, CacheError):
        return False


def asked_paths(tree_paths: Iterable[str], profile: str, requests: Sequence[Request]) -> set[str] | None:
    """The files of the commit asked for ``profile``: the union over the recorded asks of that profile
    (a ``full`` ask covers ``tokenizer``). None when nothing applies: the caller assumes everything."""
    paths = list(tree_paths)
    relevant = [r for r in requests if r.profile == profile or r.profile == "full"]
    if profile == "full":
        relevant = [r for r in requests if r.profile == "full"]
    if not relevant:
        return None
    out: set[str] = set()
    for r in relevant:
        out.update(select(paths, profile, r.include, r.exclude))
    return out


def describe(requests: Sequence[Request]) -> str:
    """``full``, ``tokenizer``, ``full --include '*.json' …`` — what was asked, for ``ls``."""
    if not requests:
        return ""
    parts = []
    for r in requests:
        text = r.profile + "".join(f" --include {p}" for p in r.include) + "".join(f" --exclude {p}" for p in r.exclude)
        if text not in parts:
            parts.append(text)
    return "; ".join(parts)
