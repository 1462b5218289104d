"""Paths, units and modelcache's defaults, shared by every part of the harness."""

from __future__ import annotations

import os
import sys
from functools import lru_cache
from pathlib import Path

__all__ = [
    "BENCH_DIR", "BIN", "GiB", "KiB", "MB", "MODELCACHE", "MiB", "PY", "REPOS", "REPO_ROOT", "TARGETS",
    "TIME", "WORK", "clean_env", "modelcache_defaults",
]

BENCH_DIR = Path(__file__).resolve().parent.parent
REPO_ROOT = BENCH_DIR.parent
WORK = BENCH_DIR / "_work"
REPOS = WORK / "repos"
TARGETS = WORK / "targets"
PY = sys.executable
BIN = Path(PY).parent
MODELCACHE = str(BIN / "modelcache")
TIME = "/usr/bin/time"

KiB, MiB, GiB = 1 << 10, 1 << 20, 1 << 30
MB = 1_000_000

_PROXY_VARS = ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "all_proxy")


@lru_cache(maxsize=1)
def modelcache_defaults() -> dict[str, int]:
    """modelcache's download defaults, from ``modelcache.settings.Settings`` (the one place they live)."""
    from modelcache.settings import Settings

    s = Settings(cache_dir=Path("."))
    return {"connections": s.connections, "chunk_size": s.chunk_size}


def clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The process environment without ``HF_*``/proxy variables, loopback unproxied, plus ``extra``."""
    env = {k: v for k, v in os.environ.items()
           if not (k.startswith(("HF_", "HUGGINGFACE_", "MODELCACHE_")) or k in _PROXY_VARS)}
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    env["HF_HUB_DISABLE_TELEMETRY"] = "1"
    env.update(extra or {})
    return env
