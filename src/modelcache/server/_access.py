"""Access to gated and private repos served from a shared cache.

A repo marked gated (``access.json``) has its files served only to callers whose token passes
the policy; a private repo shows nothing at all (404, as the Hub answers). Two policies:

- ``UpstreamPolicy``: ask the upstream Hub whether the caller's token may read the file
  (``HEAD …/resolve/…`` with that token); the decision is cached per (token, repo) for ``ttl``.
- ``TokenListPolicy``: air-gapped clusters: a file of allowed tokens (one per line, or
  ``sha256:<hex>`` of a token); compared in constant time.

No policy configured and a restricted repo asked for: refused (fail closed). Tokens are only
ever kept as sha256 digests in memory.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from pathlib import Path
from urllib.parse import quote

import httpx

from ..cache.layout import RepoLayout
from ..errors import InvalidInput

__all__ = ["AccessPolicy", "TokenListPolicy", "UpstreamPolicy", "bearer_token"]

_PREFIX = {"model": "", "dataset": "datasets/", "space": "spaces/"}


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def bearer_token(header: str | None) -> str | None:
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    value = value.strip()
    return value if scheme.lower() == "bearer" and value else None


class AccessPolicy:
    description = "none"

    async def allowed(self, layout: RepoLayout, revision: str, path: str, token: str | None) -> bool:
        return False


class TokenListPolicy(AccessPolicy):
    description = "token list"

    def __init__(self, digests: set[str]) -> None:
        self.digests = digests

    @classmethod
    def from_file(cls, path: Path) -> TokenListPolicy:
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise InvalidInput(f"cannot read the token list {path}: {exc.strerror}",
                               "give a file with one allowed token (or sha256:<hex>) per line") from None
        digests = set()
        for line in lines:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            digests.add(line[7:].lower() if line.startswith("sha256:") else _digest(line))
        return cls(digests)

    async def allowed(self, layout: RepoLayout, revision: str, path: str, token: str | None) -> bool:
        if not token:
            return False
        d = _digest(token)
        return any(hmac.compare_digest(d, known) for known in self.digests)


class UpstreamPolicy(AccessPolicy):
    description = "upstream"

    def __init__(self, endpoint: str, ttl: float = 300.0, client: httpx.AsyncClient | None = None) -> None:
        if not endpoint.startswith(("http://", "https://")):
            raise InvalidInput(f"invalid --auth-upstream {endpoint!r}", "give the Hub URL, e.g. https://huggingface.co")
        self.endpoint = endpoint.rstrip("/")
        self.ttl = ttl
        self.client = client or httpx.AsyncClient(timeout=10.0, trust_env=False, follow_redirects=False)
        self._cache: dict[tuple[str, str, str], tuple[bool, float]] = {}

    async def allowed(self, layout: RepoLayout, revision: str, path: str, token: str | None) -> bool:
        if not token:
            return False
        key = (_digest(token), layout.repo_type, layout.repo_id)
        hit = self._cache.get(key)
        now = time.monotonic()
        if hit is not None and hit[1] > now:
            return hit[0]
        url = (f"{self.endpoint}/{_PREFIX[layout.repo_type]}{layout.repo_id}/resolve/"
               f"{quote(revision, safe='')}/{quote(path or 'config.json', safe='/')}")
        try:
            resp = await self.client.head(url, headers={"Authorization": f"Bearer {token}",
                                                        "Accept-Encoding": "identity"})
        except httpx.HTTPError:
            return False  # fail closed, and do not remember: the next request asks again
        ok = resp.status_code < 400
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[key] = (ok, now + self.ttl)
        return ok
