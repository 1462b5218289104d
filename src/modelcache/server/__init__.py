"""``modelcache serve``: the cache as a read-only, Hugging Face Hub compatible HTTP endpoint.

``create_app(cache_dir)`` builds the ASGI app; ``serve(cache_dir, host, port)`` runs it with
uvicorn. Clients use it with ``HF_ENDPOINT=http://host:port``.
"""

from ._access import AccessPolicy, TokenListPolicy, UpstreamPolicy
from .app import create_app, serve

__all__ = ["AccessPolicy", "TokenListPolicy", "UpstreamPolicy", "create_app", "serve"]
