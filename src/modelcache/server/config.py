"""What ``modelcache serve`` runs: one spec, one way to build the app from it.

The spec is plain data (it crosses into ``--workers`` processes as JSON: ``app_factory`` is each
worker's entry point); ``build_app`` turns
it into the ASGI app — access policy, mirror, use recorder — in exactly one place, so a single
process and every worker of a multi-process server are configured alike.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import InvalidInput
from ..settings import Settings
from ._access import AccessPolicy, TokenListPolicy, UpstreamPolicy

if TYPE_CHECKING:
    from .app import ServeApp

__all__ = ["ENV", "MIRROR_API_DEADLINE", "ServeSpec", "access_policy", "app_factory", "build_app"]

ENV = "MODELCACHE_SERVE_SPEC"
"""Where ``serve --workers N`` puts the spec (JSON) for its worker processes."""

MIRROR_API_DEADLINE = 10.0
"""Seconds a mirror retries an upstream API call while its caller waits (downloads wait longer)."""


@dataclass(frozen=True)
class ServeSpec:
    """How ``modelcache serve`` is set up: access policy, mirror, log format and the ``Settings`` overrides.

    InvalidInput when both access policies are given, or ``allow``/``deny`` without ``upstream``.
    """

    auth_upstream: str | None = None
    """Check callers' tokens for gated/private repos against this Hub."""
    allow_insecure_auth_upstream: bool = False
    """Allow a plain-http ``auth_upstream`` on another host (callers' tokens cross the network in clear)."""
    auth_tokens: str | None = None
    """Air-gapped: a file of allowed tokens."""
    auth_ttl: float = 300.0
    """Seconds an upstream access decision is remembered."""
    upstream: str | None = None
    """Read-through mirror of this Hub."""
    revision_ttl: float = 60.0
    """Mirror: seconds a revision lookup is trusted."""
    allow: tuple[str, ...] = ()
    deny: tuple[str, ...] = ()
    log_json: bool = False
    settings: dict[str, object] = field(default_factory=dict)
    """The CLI's global overrides (cache_dir, endpoint, token_file, offline, …) for ``Settings``."""

    def __post_init__(self) -> None:
        if self.auth_upstream and self.auth_tokens:
            raise InvalidInput("--auth-upstream and --auth-tokens exclude each other", "choose one access policy")
        if (self.allow or self.deny) and not self.upstream:
            raise InvalidInput("--allow/--deny apply to a mirror", "add --upstream URL")

    def to_json(self) -> str:
        """The spec as a JSON string (an object of its fields), as ``MODELCACHE_SERVE_SPEC`` carries it."""
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> ServeSpec:
        """The spec from a ``to_json`` string (validated again)."""
        data = json.loads(text)
        data["allow"], data["deny"] = tuple(data["allow"]), tuple(data["deny"])
        return cls(**data)


def access_policy(spec: ServeSpec) -> AccessPolicy | None:
    """The access policy ``spec`` asks for (upstream token check, or a token list); None: no access check.

    InvalidInput when the token list file cannot be read.
    """
    if spec.auth_upstream:
        return UpstreamPolicy(spec.auth_upstream, spec.auth_ttl, allow_insecure=spec.allow_insecure_auth_upstream)
    if spec.auth_tokens:
        return TokenListPolicy.from_file(Path(spec.auth_tokens))
    return None


def build_app(spec: ServeSpec, settings: Settings) -> ServeApp:
    """The app for ``spec`` over ``settings.cache_dir`` (its client, if a mirror, from ``settings``)."""
    from ..cache.usage import ThrottledUseRecorder
    from .app import create_app

    mirror = None
    if spec.upstream:
        from ..hub.client import HubClient
        from .mirror import Mirror

        from ..hub.retry import RetryPolicy

        # a caller is waiting: retry the upstream's API briefly, then answer from the cache (or 503)
        client = HubClient.for_settings(settings, spec.upstream.rstrip("/"), connections=32,
                                        retry=RetryPolicy(deadline=min(settings.api_deadline, MIRROR_API_DEADLINE)))
        mirror = Mirror(settings, client, ttl=spec.revision_ttl, allow=spec.allow, deny=spec.deny)
    return create_app(settings.cache_dir, on_served=ThrottledUseRecorder(), access=access_policy(spec),
                      mirror=mirror, log_json=spec.log_json)


def app_factory() -> ServeApp:
    """``serve --workers N``: the app each uvicorn worker process builds at its start — from the
    spec the CLI put in ``MODELCACHE_SERVE_SPEC`` and the process environment (this is an entry
    point), exactly as a single process does."""
    import os

    spec = ServeSpec.from_json(os.environ[ENV])
    return build_app(spec, Settings.from_process_env(**spec.settings))  # type: ignore[arg-type]
