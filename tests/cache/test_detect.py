"""The runtime check, on caches built by import (no network anywhere)."""

from __future__ import annotations

import os
from pathlib import Path

from modelcache import ModelCache, Settings

REPO = "modelcache/tiny-llama"


def imported(tmp_path: Path, demo_model: Path) -> tuple[ModelCache, str]:
    mc = ModelCache(Settings(cache_dir=tmp_path / "c", offline=True))
    rec = mc.import_folder(demo_model, REPO)
    return mc, rec.commit


def test_complete_cache_is_ready(tmp_path: Path, demo_model: Path) -> None:
    mc, commit = imported(tmp_path, demo_model)
    for profile in ("tokenizer", "full"):
        r = mc.check(REPO, profile=profile)
        assert r.ready, r.reason
        assert r.commit == commit
    assert mc.check(REPO, revision=commit).ready


def test_tokenizer_ready_without_weights(tmp_path: Path, demo_model: Path) -> None:
    mc, commit = imported(tmp_path, demo_model)
    snap = mc.layout(REPO).snapshot(commit)
    for shard in snap.glob("*.safetensors"):
        shard.unlink()
    assert mc.check(REPO, profile="tokenizer").ready
    full = mc.check(REPO, profile="full")
    assert not full.ready
    assert "model-00001-of-00002.safetensors" in full.missing
    assert "model-00002-of-00002.safetensors" in full.reason


def test_missing_shard_named(tmp_path: Path, demo_model: Path) -> None:
    mc, commit = imported(tmp_path, demo_model)
    (mc.layout(REPO).snapshot(commit) / "model-00002-of-00002.safetensors").unlink()
    r = mc.check(REPO)
    assert not r.ready and r.missing == ("model-00002-of-00002.safetensors",)


def test_wrong_size_is_a_miss(tmp_path: Path, demo_model: Path) -> None:
    mc, commit = imported(tmp_path, demo_model)
    link = mc.layout(REPO).snapshot(commit) / "config.json"
    blob = Path(os.path.realpath(link))
    with open(blob, "ab") as fh:
        fh.write(b" ")
    r = mc.check(REPO, profile="tokenizer")
    assert not r.ready
    assert r.wrong_size[0][0] == "config.json"


def test_unknown_revision_and_repo(tmp_path: Path, demo_model: Path) -> None:
    mc, _ = imported(tmp_path, demo_model)
    r = mc.check(REPO, revision="v2")
    assert not r.ready and "v2" in r.reason
    assert not mc.check(REPO, revision="f" * 40).ready
    assert not mc.check("other/repo").ready


def test_broken_symlink_is_missing(tmp_path: Path, demo_model: Path) -> None:
    mc, commit = imported(tmp_path, demo_model)
    blob = Path(os.path.realpath(mc.layout(REPO).snapshot(commit) / "tokenizer.json"))
    blob.unlink()
    r = mc.check(REPO, profile="tokenizer")
    assert not r.ready and "tokenizer.json" in r.missing


def test_import_is_deterministic(tmp_path: Path, demo_model: Path) -> None:
    a = ModelCache(Settings(cache_dir=tmp_path / "a")).import_folder(demo_model, REPO)
    b = ModelCache(Settings(cache_dir=tmp_path / "b")).import_folder(demo_model, "other/name")
    assert a.commit == b.commit
    assert a.files["model-00001-of-00002.safetensors"].is_lfs
    assert not a.files["config.json"].is_lfs


def test_rm_keeps_shared_blobs(tmp_path: Path, demo_model: Path) -> None:
    import shutil

    mc, first = imported(tmp_path, demo_model)
    changed = tmp_path / "changed"
    shutil.copytree(demo_model, changed)
    (changed / "config.json").write_text('{"model_type": "llama", "changed": true}')
    second = mc.import_folder(changed, REPO, "v2").commit
    assert second != first
    plan = mc.rm(REPO, "main")
    assert plan.commits == (first,)
    assert len(plan.blobs) == 1  # only the old config.json; the shards are shared with v2
    assert mc.check(REPO, revision="v2").ready
    assert not mc.check(REPO, revision="main").ready
    mc.rm(REPO)
    assert not mc.layout(REPO).folder.exists()
