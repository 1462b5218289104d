"""The Python API: ``ModelManager`` as an engine launcher uses it."""

from __future__ import annotations

from pathlib import Path

import pytest
from models_helpers import REPO, Cached, variant

from modelcache import ModelCache, ModelManager, Settings
from modelcache.models import CardMismatch, UnknownModel
from modelcache.models.card import disk_card, recorded_card


def manager(c: Cached) -> ModelManager:
    return ModelManager(ModelCache(Settings(cache_dir=c.dir, offline=True)), who="tester@host")


def test_use_joins_as_replica_for_the_block(cached: Cached) -> None:
    mm = manager(cached)
    out = mm.add("llama", REPO, kinds=["chat", "embeddings"], engine="sglang")
    assert out.record.by == "tester@host" and out.record.kinds == ("chat", "embeddings")
    with mm.use("llama", replica="sglang-0") as ready:
        assert ready.snapshot == cached.snapshot(cached.v1) and ready.card == out.record.checksum
        assert ready.env["HF_HUB_OFFLINE"] == "1" and ready.env["MODELCACHE_MODEL_NAME"] == "llama"
        assert [r.replica for r in mm.replicas("llama")] == ["sglang-0"]
        assert len(mm.cache.leases()) == 2  # the run's lease and the replica's
    assert mm.replicas() == [] and mm.cache.leases() == []
    with mm.replica("llama", "sglang-1", ttl=5):
        assert mm.status("llama")["models"][0]["replicas"][0]["replica"] == "sglang-1"
    with pytest.raises(UnknownModel):
        mm.status("nope")


def test_recorded_and_disk_cards_agree_and_see_added_files(cached: Cached) -> None:
    layout = ModelCache(Settings(cache_dir=cached.dir)).layout(REPO)
    rec = recorded_card(layout, cached.v1)
    assert rec is not None and set(rec.files) == {"config.json", "generation_config.json", "tokenizer.json",
                                                  "tokenizer_config.json"}
    assert disk_card(layout, cached.v1).matches
    (cached.snapshot(cached.v1) / "chat_template.jinja").write_text("{{ 'surprise' }}")
    dc = disk_card(layout, cached.v1)
    assert not dc.matches and [(d.path, d.kind) for d in dc.drift] == [("chat_template.jinja", "added")]
    mm = manager(cached)
    with pytest.raises(CardMismatch):
        mm.add("llama", REPO)


def test_a_moved_branch_is_noted_not_followed(cached: Cached, demo_model: Path, tmp_path: Path) -> None:
    mm = manager(cached)
    mm.add("llama", REPO)
    mm.cache.import_folder(variant(demo_model, tmp_path / "v3", "{{ 'v3' }}"), REPO)  # main moves
    m = mm.status()["models"][0]
    assert m["ok"] and m["commit"] == cached.v1 and "main now points at" in m["notes"][0]
    assert mm.resolve("llama") == cached.snapshot(cached.v1)
