"""`rm` refuses a revision something holds (pin, lease, registration, download), unless --force."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers.cli import run_cli
from helpers.live_server import DEMO_REPO, import_demo

from modelcache import ModelCache, ModelManager, Settings
from modelcache.cache.activity import activity
from modelcache.service.model_cache import InUse


def _mc(cache: Path) -> ModelCache:
    return ModelCache(Settings(cache_dir=cache, offline=True))


def test_a_pinned_revision_is_refused_then_removed_with_force(tmp_path: Path) -> None:
    cache = tmp_path / "c"
    record = import_demo(cache)
    mc = _mc(cache)
    mc.pin(DEMO_REPO)
    code, _out, err = run_cli("--cache-dir", str(cache), "rm", DEMO_REPO)
    assert code == 1 and "is pinned" in err and "--force" in err
    assert mc.check(DEMO_REPO).ready
    code, _out, err = run_cli("--cache-dir", str(cache), "rm", f"{DEMO_REPO}@{record.commit[:7]}", "--force")
    assert code == 0, err
    assert not mc.check(DEMO_REPO).ready


def test_leased_registered_and_downloading_revisions_are_in_use(tmp_path: Path) -> None:
    cache = tmp_path / "c"
    record = import_demo(cache)
    mc = _mc(cache)
    with mc.lease(DEMO_REPO, holder="vllm-0"):
        with pytest.raises(InUse, match="leased by vllm-0"):
            mc.rm(DEMO_REPO)
    marker = activity(mc.layout(DEMO_REPO), record.commit)
    assert marker.try_acquire()
    try:
        with pytest.raises(InUse, match="being downloaded"):
            mc.rm(DEMO_REPO)
    finally:
        marker.release()
    ModelManager(mc).add("tiny", DEMO_REPO)
    with pytest.raises(InUse, match="registered as model tiny"):
        mc.rm(DEMO_REPO)
    assert mc.check(DEMO_REPO).ready
    ModelManager(mc).remove("tiny")
    mc.rm(DEMO_REPO)
    assert not mc.check(DEMO_REPO).ready
