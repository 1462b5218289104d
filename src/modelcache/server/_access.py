"""Access to gated and private repos served from a shared cache.

A repo marked gated (``access.json``) has its files served only to callers whose token passes
the policy; a private repo shows nothing at all (404, as the Hub answers). Two policies:

- ``UpstreamPolicy``: ask the upstream Hub whether the caller's token may read the file
  (``HEAD …/resolve/…`` with that token); the decision is cached per (token, repo) for ``ttl``.
- ``TokenListPolicy``: air-gapped clusters: a file of allowed tokens (one per line, or
  ``sha256:<hex>`` of a token); compared in constant time.

No policy configured and a restricted repo asked for: refused (fail closed). Tokens are only
ever kept as sha256 digests in memory.

Every decision is made on the *validated* repo id, revision and path that will be served
(``checked_target`` rejects ``.``/``..``/empty segments, encoded or not, before anything
else happens), the upstream URL is built from percent-encoded segments (no client can
normalise it into another repo), and an upstream answer is cached under exactly
(token, repo type, repo id, revision, path). Any error fails closed and is not cached.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import time
from dataclasses import replace
from pathlib import Path
from urllib.parse import quote, urlsplit

import httpx

from ..cache.layout import RepoLayout
from ..errors import InvalidInput
from ..files import read_bounded
from ..validation import validate_repo_id, validate_repo_path, validate_revision
from ._routes import Target

__all__ = ["AccessPolicy", "TokenListPolicy", "UpstreamPolicy", "bearer_token", "checked_target", "is_loopback_url"]

_PREFIX = {"model": "", "dataset": "datasets/", "space": "spaces/"}


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def bearer_token(header: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, or None."""
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    value = value.strip()
    return value if scheme.lower() == "bearer" and value else None


def _candidate_ok(cand: object, kind: str) -> bool:
    try:
        validate_repo_id(cand.repo_id)  # type: ignore[attr-defined]
        validate_revision(cand.revision)  # type: ignore[attr-defined]
        for seg in cand.rest[1:]:  # type: ignore[attr-defined]
            if seg in (".", "..") or "\\" in seg or (kind == "resolve" and "/" in seg):
                return False  # a dot segment, or an encoded '/' in a file path (the HF client sends real ones)
        if cand.path:  # type: ignore[attr-defined]
            validate_repo_path(cand.path)  # type: ignore[attr-defined]
        return True
    except InvalidInput:
        return False


def checked_target(target: Target) -> Target:
    """``target`` with only the readings whose repo id, revision and path are valid as decoded.

    Raises ``InvalidInput`` (a 400, the same for every repo: no oracle) when no reading is
    valid: ``..``/``%2e%2e``/``%2F`` tricks never reach the cache, the mirror or the upstream.
    """
    if target.kind not in ("resolve", "api") or not target.candidates:
        return target
    kept = tuple(c for c in target.candidates if _candidate_ok(c, target.kind))
    if not kept:
        raise InvalidInput("invalid repo id, revision or path in the request",
                           "'.', '..', empty and encoded '/' path segments are refused")
    return replace(target, candidates=kept)


def is_loopback_url(url: str) -> bool:
    """True when ``url``'s host is this machine (``localhost``, 127.0.0.0/8, ``::1``)."""
    host = (urlsplit(url).hostname or "").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class AccessPolicy:
    """Who may read a gated repo; this base allows no one."""

    description = "none"

    async def allowed(self, layout: RepoLayout, revision: str, path: str, token: str | None) -> bool:
        return False


class TokenListPolicy(AccessPolicy):
    """Allows callers whose token is on a list (kept as sha256 digests, compared in constant time)."""

    description = "token list"

    def __init__(self, digests: set[str]) -> None:
        self.digests = digests

    @classmethod
    def from_file(cls, path: Path) -> TokenListPolicy:
        """The policy for a file of one token (or ``sha256:<hex>``) per line; ``#`` comments and blanks skipped.

        Raises ``InvalidInput`` when the file cannot be read or is not UTF-8 text.
        """
        try:  # a regular file of bounded size (a mounted Secret's link is fine): never a FIFO hang
            lines = read_bounded(path, 16 << 20, follow=True).decode("utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            why = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not UTF-8 text"
            raise InvalidInput(f"cannot read the token list {path}: {why}",
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
    """Allows callers whose token the upstream Hub lets read the repo (answers cached for ``ttl`` seconds)."""

    description = "upstream"

    def __init__(self, endpoint: str, ttl: float = 300.0, client: httpx.AsyncClient | None = None, *,
                 allow_insecure: bool = False) -> None:
        parts = urlsplit(endpoint)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
            raise InvalidInput(f"invalid --auth-upstream {endpoint!r}", "give the Hub URL, e.g. https://huggingface.co")
        if parts.scheme == "http" and not allow_insecure and not is_loopback_url(endpoint):
            raise InvalidInput(
                f"--auth-upstream {endpoint} is plain http to another host: callers' tokens would cross the "
                "network in clear",
                "use https://, or add --allow-insecure-auth-upstream if the network is trusted")
        self.endpoint = endpoint.rstrip("/")
        self.ttl = ttl
        self.client = client or httpx.AsyncClient(timeout=10.0, trust_env=False, follow_redirects=False)
        self._cache: dict[tuple[str, str, str, str, str], tuple[bool, float]] = {}

    def _url(self, layout: RepoLayout, revision: str, path: str) -> str:
        """The upstream resolve URL, every segment validated and percent-encoded (nothing to normalise)."""
        validate_repo_id(layout.repo_id)
        validate_revision(revision)
        path = validate_repo_path(path or "config.json")
        repo = "/".join(quote(p, safe="") for p in layout.repo_id.split("/"))
        return (f"{self.endpoint}/{_PREFIX[layout.repo_type]}{repo}/resolve/{quote(revision, safe='')}/"
                f"{'/'.join(quote(p, safe='') for p in path.split('/'))}")

    async def allowed(self, layout: RepoLayout, revision: str, path: str, token: str | None) -> bool:
        if not token:
            return False
        try:
            url = self._url(layout, revision, path)
        except InvalidInput:
            return False
        key = (_digest(token), layout.repo_type, layout.repo_id, revision, path)
        hit = self._cache.get(key)
        now = time.monotonic()
        if hit is not None and hit[1] > now:
            return hit[0]
        try:
            resp = await self.client.head(url, headers={"Authorization": f"Bearer {token}",
                                                        "Accept-Encoding": "identity"})
        except httpx.HTTPError:
            return False  # fail closed, and do not remember: the next request asks again
        if resp.status_code >= 500 or resp.status_code == 429:
            return False  # upstream trouble is not an answer: refuse now, ask again next time
        ok = resp.status_code < 400
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[key] = (ok, now + self.ttl)
        return ok
