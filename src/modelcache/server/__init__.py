"""``modelcache serve``: the cache as a read-only, Hugging Face Hub compatible HTTP endpoint.

``create_app(cache_dir)`` builds the ASGI app; ``config.build_app(spec, settings)`` builds it
as the CLI does (access policy, mirror); ``serve(app, host, port)`` runs it with uvicorn.
Clients use it with ``HF_ENDPOINT=http://host:port``.
"""

from ._access import AccessPolicy, TokenListPolicy, UpstreamPolicy
from .app import create_app
from .run import serve

__all__ = ["AccessPolicy", "TokenListPolicy", "UpstreamPolicy", "create_app", "serve"]
