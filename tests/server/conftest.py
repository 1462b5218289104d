"""Fixtures for the server tests: isolated HF_* environment, a demo cache, a live server."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

_ROOT = Path(__file__).resolve().parents[2]
if str(_ROOT) not in sys.path:  # make ``tests.helpers`` importable however pytest is started
    sys.path.insert(0, str(_ROOT))

from tests.helpers.live_server import DEMO_MODEL, DEMO_REPO as REPO, import_demo, live_server  # noqa: E402

from modelcache.cache.importer import import_folder  # noqa: E402
from modelcache.cache.layout import RepoLayout  # noqa: E402
from modelcache.cache.records import TreeRecord  # noqa: E402


@pytest.fixture(autouse=True)
def _isolated_hf_env(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """No HF_* variable of the developer's shell leaks in; the HF client never phones home."""
    for name in list(os.environ):
        if name.startswith(("HF_", "HUGGINGFACE_", "HUGGING_FACE_")) or name.lower().endswith("_proxy"):
            monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path_factory.mktemp("hf_home")))
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
