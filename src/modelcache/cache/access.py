"""Who may read a repo served from this cache: ``<repo>/.modelcache/access.json``.

Recorded at download time from the Hub's answer (``gated``, ``private``) or set on import
(``--gated``/``--private`` for air-gapped clusters). ``serve`` hands a gated repo's files — and
anything of a private repo — only to callers whose token passes its access policy.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from .layout import RepoLayout
from ..files import atomic_write_bytes

__all__ = ["Access", "read_access", "write_access"]


@dataclass(frozen=True)
class Access:
    gated: bool = False
    private: bool = False

    @property
    def restricted(self) -> bool:
        return self.gated or self.private

    def to_dict(self) -> dict[str, bool]:
        return {"gated": self.gated, "private": self.private}


def read_access(layout: RepoLayout) -> Access:
    try:
        d = json.loads((layout.state / "access.json").read_bytes())
        return Access(bool(d.get("gated")), bool(d.get("private")))
    except (OSError, ValueError, AttributeError):
        return Access()


def write_access(layout: RepoLayout, access: Access) -> None:
    if access == read_access(layout):
        return
    atomic_write_bytes(layout.state / "access.json", json.dumps(access.to_dict()).encode())
