"""Who may read what: gated repos' files only for allowed tokens, private repos nothing without one.

The decision is made on the repo and path exactly as they will be served (already validated by
``_reader.Reader.pick``), and fails closed: an access record that cannot be read counts as
restricted.
"""

from __future__ import annotations

import os
from pathlib import Path

from starlette.requests import Request

from ..cache.access import Access, read_access
from ..cache.layout import RepoLayout
from ..cache.readiness import resolve_commit
from ._access import AccessPolicy, bearer_token
from ._http import HttpError
from ._routes import Candidate

__all__ = ["Gate"]


class Gate:
    """Decides who may read a repo served from the cache, by its ``access.json`` and the access policy."""

    def __init__(self, access: AccessPolicy | None) -> None:
        self.access = access
        self._access_cache: dict[Path, tuple[Access, object, str]] = {}

    def access_of(self, layout: RepoLayout) -> Access:
        """``access.json`` of a repo, parsed again only when the file changes (one ``stat`` per request).

        Fails closed: a record that cannot be read counts as restricted and is never cached.
        """
        folder = layout.folder
        hit = self._access_cache.get(folder)
        path = hit[2] if hit is not None else os.path.join(layout.state, "access.json")
        stamp: object
        try:
            st = os.stat(path)
            stamp = (st.st_ino, st.st_size, st.st_mtime_ns)
        except FileNotFoundError:
            stamp = "missing"
        except OSError:
            stamp = None  # cannot tell: read it (and fail closed if that fails too)
        if hit is None or hit[1] != stamp or stamp is None:
            hit = (read_access(layout), stamp, path)
            if hit[0].unreadable or stamp is None:
                return hit[0]  # never cache an answer we could not read
            if len(self._access_cache) > 10_000:
                self._access_cache.clear()
            self._access_cache[folder] = hit
        return hit[0]

    async def authorize(self, request: Request, kind: str, layout: RepoLayout, cand: Candidate) -> None:
        """Gated repos: files only for allowed tokens. Private repos: nothing without one."""
        restriction = self.access_of(layout)
        if not restriction.restricted or (kind == "api" and not restriction.private):
            return
        token = bearer_token(request.headers.get("authorization"))
        revision = resolve_commit(layout, cand.revision) or cand.revision
        if self.access is not None and await self.access.allowed(layout, revision, cand.path, token):
            return
        if restriction.private:
            raise HttpError(404, "RepoNotFound", f"{layout.repo_type} {layout.repo_id} is not in this cache")
        why = "no token was sent" if not token else "this token has not been granted access"
        if self.access is None:
            why = "this server has no access policy (start it with --auth-upstream or --auth-tokens)"
        raise HttpError(401 if not token else 403, "GatedRepo",
                        f"access to {layout.repo_id} is restricted: {why}")

