"""A real uvicorn server on 127.0.0.1 in a background thread, and the bundled demo model.

    with live_server(cache_dir) as url:      # "http://127.0.0.1:PORT", /healthz already answers
        snapshot_download(repo, endpoint=url, cache_dir=tmp, token=False)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import modelcache
from modelcache.cache.importer import import_folder
from modelcache.cache.layout import RepoLayout
from modelcache.cache.records import TreeRecord
from modelcache.server.background import running_server

__all__ = ["DEMO_MODEL", "DEMO_REPO", "import_demo", "live_server"]

DEMO_MODEL = Path(modelcache.__file__).parent / "_demo_model"
DEMO_REPO = "modelcache/tiny-llama"


def import_demo(
    cache_dir: Path, repo_id: str = DEMO_REPO, revision: str = "main", repo_type: str = "model"
) -> TreeRecord:
    """Publish the bundled tiny model into ``cache_dir`` as ``repo_id@revision``."""
    return import_folder(RepoLayout(Path(cache_dir), repo_type, repo_id), DEMO_MODEL, revision=revision)


def live_server(cache_dir: Path, **create_app_kw: Any):  # type: ignore[no-untyped-def]
    """Serve ``cache_dir`` with ``modelcache.server.create_app`` on a free loopback port."""
    return running_server(Path(cache_dir), **create_app_kw)
