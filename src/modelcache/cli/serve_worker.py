"""``serve --workers N``: the app factory each uvicorn worker process starts from.

The CLI puts the serve options in ``MODELCACHE_SERVE_WORKER`` (JSON) before uvicorn forks its
workers; each worker reads them here, at its own entry point, and builds the same app.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from starlette.applications import Starlette

__all__ = ["ENV", "app_factory", "spec_for"]

ENV = "MODELCACHE_SERVE_WORKER"


def spec_for(cache_dir: Path, *, auth_upstream: str | None, auth_tokens: Path | None, auth_ttl: float,
             log_json: bool, allow_insecure: bool = False) -> str:
    return json.dumps({"cache_dir": str(cache_dir), "auth_upstream": auth_upstream,
                       "auth_tokens": str(auth_tokens) if auth_tokens else None, "auth_ttl": auth_ttl,
                       "log_json": log_json, "allow_insecure": allow_insecure})


def app_factory() -> Starlette:
    from ..cache.usage import ThrottledUseRecorder
    from ..server import TokenListPolicy, UpstreamPolicy, create_app

    spec = json.loads(os.environ[ENV])
    access = (UpstreamPolicy(spec["auth_upstream"], spec["auth_ttl"], allow_insecure=spec.get("allow_insecure", False))
              if spec["auth_upstream"]
              else TokenListPolicy.from_file(Path(spec["auth_tokens"])) if spec["auth_tokens"] else None)
    return create_app(Path(spec["cache_dir"]), on_served=ThrottledUseRecorder(), access=access,
                      log_json=spec["log_json"])
