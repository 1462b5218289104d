"""Fixtures for the server tests: a demo cache served by a live server.

``tests/conftest.py`` already isolates HF_* variables and puts ``tests/`` on ``sys.path``;
here proxies are kept out of the way too (everything talks to 127.0.0.1).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers.live_server import DEMO_MODEL, import_demo, live_server
from helpers.live_server import DEMO_REPO as REPO

from modelcache.cache.importer import import_folder
from modelcache.cache.layout import RepoLayout
from modelcache.cache.records import TreeRecord

__all__ = ["REPO"]


@pytest.fixture(autouse=True)
def _no_proxy_no_hf_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith(("HF_", "HUGGINGFACE_", "HUGGING_FACE_")) or name.lower().endswith("_proxy"):
            if name not in ("HF_HOME", "HF_HUB_DISABLE_TELEMETRY", "HF_HUB_DISABLE_XET"):
                monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")
    monkeypatch.setenv("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


@pytest.fixture(scope="module")
def demo_cache(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, TreeRecord]:
    """A cache with the demo model at ``main``, and at ``refs/pr/1`` a commit whose README differs."""
    cache = tmp_path_factory.mktemp("served_cache")
    record = import_demo(cache, REPO)
    pr = tmp_path_factory.mktemp("pr_model") / "m"
    shutil.copytree(DEMO_MODEL, pr)
    (pr / "README.md").write_text("# the PR version\n")
    import_folder(RepoLayout(cache, "model", REPO), pr, revision="refs/pr/1")
    return cache, record


@pytest.fixture(scope="module")
def demo_server(demo_cache: tuple[Path, TreeRecord]) -> Iterator[str]:
    with live_server(demo_cache[0], page_size=2) as url:
        yield url
