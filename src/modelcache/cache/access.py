"""Who may read a repo served from this cache: ``<repo>/.modelcache/access.json``.

Recorded at download time from the Hub's answer (``gated``, ``private``) or set on import
(``--gated``/``--private`` for air-gapped clusters). ``serve`` hands a gated repo's files — and
anything of a private repo — only to callers whose token passes its access policy.

Reading fails *closed*: a record that exists but cannot be read (EMFILE, EACCES, a FIFO or
link planted there, junk JSON, wrong types) reads as gated *and* private, with
``unreadable=True`` so that a caller never caches that answer. Only a missing record means
"unrestricted".
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from ..files import CorruptState, atomic_write_bytes, read_json_state, warn_corrupt
from .layout import RepoLayout

__all__ = ["Access", "FAIL_CLOSED", "read_access", "write_access"]


@dataclass(frozen=True)
class Access:
    """Who may read a repo: gated and private flags."""

    gated: bool = False
    private: bool = False
    unreadable: bool = False
    """The record exists but could not be read: restricted, and not to be cached."""

    @property
    def restricted(self) -> bool:
        """True when gated or private (``serve`` checks the caller's token)."""
        return self.gated or self.private

    def to_dict(self) -> dict[str, bool]:
        """``{"gated", "private"}``."""
        return {"gated": self.gated, "private": self.private}


FAIL_CLOSED = Access(gated=True, private=True, unreadable=True)


def read_access(layout: RepoLayout) -> Access:
    """The repo's access record; ``Access()`` when there is none, ``FAIL_CLOSED`` when it is unreadable."""
    path = layout.state / "access.json"
    hint = (f"fix or remove {path} (`modelcache import --gated/--private` or a download rewrites it); "
            "until then the repo is served to nobody")
    try:
        data = read_json_state(path, max_bytes=4096, max_depth=2, hint=hint)
    except CorruptState as exc:
        warn_corrupt(exc)
        return FAIL_CLOSED
    except OSError:
        return FAIL_CLOSED
    if data is None:
        return Access()
    gated, private = data.get("gated", False), data.get("private", False)  # type: ignore[union-attr]
    if not isinstance(gated, bool) or not isinstance(private, bool):
        warn_corrupt(CorruptState(path, "'gated' and 'private' must be true or false", hint))
        return FAIL_CLOSED
    return Access(gated, private)


def write_access(layout: RepoLayout, access: Access) -> None:
    """Record ``access`` (atomically; nothing written when it is already recorded)."""
    access = Access(access.gated, access.private)
    if access == read_access(layout):
        return
    atomic_write_bytes(layout.state / "access.json", json.dumps(access.to_dict()).encode(), root=layout.cache_dir,
                       tmp_dir=layout.tmp)
