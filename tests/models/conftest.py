"""Fixtures of the model manager tests (helpers in ``models_helpers``)."""

from __future__ import annotations

from pathlib import Path

import pytest
from models_helpers import REPO, Cached, variant

from modelcache import ModelCache, Settings


@pytest.fixture
def cached(tmp_path: Path, demo_model: Path) -> Cached:
    cache_dir = tmp_path / "cache"
    mc = ModelCache(Settings(cache_dir=cache_dir, offline=True))
    v1 = mc.import_folder(demo_model, REPO).commit
    v2 = mc.import_folder(variant(demo_model, tmp_path / "v2", "{{ messages[-1]['content'] }}"), REPO, "v2").commit
    assert v1 != v2
    return Cached(cache_dir, v1, v2)
