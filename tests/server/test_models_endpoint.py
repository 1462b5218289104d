"""`serve` reports registered models, their replicas and skew at /modelcache/models."""

from __future__ import annotations

from pathlib import Path

import httpx
from helpers.live_server import import_demo

from modelcache import ModelCache, Settings
from modelcache.models import ModelManager
from modelcache.server.background import running_server

REPO = "modelcache/tiny-llama"


def test_models_endpoint_reports_replica_skew(tmp_path: Path, demo_model: Path) -> None:
    import shutil

    cache = tmp_path / "c"
    import_demo(cache)
    mc = ModelCache(Settings(cache_dir=cache, offline=True))
    mm = ModelManager(mc)
    mm.add("tiny", REPO, "main", kinds=["chat"])
    mm.join("tiny", "pod-0")
    # a new tokenizer is published and a replica joins with it: skew
    changed = tmp_path / "v2"
    shutil.copytree(demo_model, changed)
    (changed / "tokenizer_config.json").write_text('{"chat_template": "changed"}')
    mc.import_folder(changed, REPO, "v2")
    mm.add("tiny", REPO, "v2", namespace="canary")
    mm.join("tiny", "pod-9", namespace="canary")
    with running_server(cache) as url:
        body = httpx.get(f"{url}/modelcache/models").json()
        names = {(m["namespace"], m["name"]) for m in body["models"]}
        assert names == {("default", "tiny"), ("canary", "tiny")}
        assert all(m["agree"] for m in body["models"])
        one = httpx.get(f"{url}/modelcache/models", params={"namespace": "canary"}).json()
        assert [m["namespace"] for m in one["models"]] == ["canary"]
        # the tokenizer drifts on disk and a replica joins anyway (--force): the replicas disagree
        import os

        blob = Path(os.path.realpath(mc.layout(REPO).snapshot(mm.get("tiny").commit) / "tokenizer_config.json"))
        blob.write_text('{"chat_template": "edited in place"}')
        mm.join("tiny", "pod-1", force=True)
        body = httpx.get(f"{url}/modelcache/models", params={"namespace": "default"}).json()
        (model,) = body["models"]
        assert model["agree"] is False and model["skew"] and body["ok"] is False


def test_models_endpoint_shows_no_paths_and_nothing_of_restricted_repos(tmp_path: Path) -> None:
    from modelcache.cache.access import Access, write_access

    cache = tmp_path / "c"
    import_demo(cache)
    import_demo(cache, "org/secret")
    mc = ModelCache(Settings(cache_dir=cache, offline=True))
    mm = ModelManager(mc)
    mm.add("tiny", REPO, "main", kinds=["chat"])
    mm.add("hidden-name", "org/secret", "main", kinds=["chat"])
    write_access(mc.layout("org/secret"), Access(private=True))
    with running_server(cache) as url:
        r = httpx.get(f"{url}/modelcache/models")
        body = r.json()
    assert [m["name"] for m in body["models"]] == ["tiny"] and body["hidden"] == 1
    assert str(cache) not in r.text and "org/secret" not in r.text and "hidden-name" not in r.text
