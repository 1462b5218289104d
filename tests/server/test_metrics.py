"""`/metrics` (Prometheus), `/readyz`, JSON request logs."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import httpx
import pytest
from helpers.fault_server import Repo, fault_server
from helpers.live_server import import_demo

from modelcache import ModelCache, Settings
from modelcache.cache.activity import activity
from modelcache.hub.client import HubClient
from modelcache.server.mirror import Mirror
from modelcache.server.background import running_server

REPO = "modelcache/tiny-llama"


def metric(text: str, name: str, labels: str = "") -> float:
    for line in text.splitlines():
        if line.startswith(name + (labels if labels else " ")) or (not labels and line.startswith(name + " ")):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name}{labels} not in metrics:\n{text}")


def test_metrics_count_what_happens(tmp_path: Path) -> None:
    cache = tmp_path / "c"
    record = import_demo(cache)
    mc = ModelCache(Settings(cache_dir=cache, offline=True))
    mc.set_budget(10 * 1024 * 1024)
    with running_server(cache) as url:
        commit = record.commit
        size = record.files["config.json"].size
        assert httpx.get(f"{url}/{REPO}/resolve/{commit}/config.json").status_code == 200
        assert httpx.get(f"{url}/{REPO}/resolve/{commit}/config.json", headers={"Range": "bytes=0-9"}).status_code == 206
        assert httpx.get(f"{url}/{REPO}/resolve/{commit}/nope.json").status_code == 404
        assert httpx.get(f"{url}/org/none/resolve/main/x").status_code == 404
        marker = activity(mc.layout(REPO), commit)
        assert marker.try_acquire()
        try:
            text = httpx.get(f"{url}/metrics").text
        finally:
            marker.release()
    assert metric(text, "modelcache_served_bytes_total") == size + 10
    assert metric(text, "modelcache_cache_hits_total") == 2
    assert metric(text, "modelcache_errors_total", '{kind="EntryNotFound"}') == 1
    assert metric(text, "modelcache_errors_total", '{kind="RepoNotFound"}') == 1
    assert metric(text, "modelcache_cache_size_bytes") >= record.total_size
    assert metric(text, "modelcache_cache_budget_bytes") == 10 * 1024 * 1024
    assert metric(text, "modelcache_downloads_in_progress") == 1
    assert metric(text, "modelcache_requests_total", '{endpoint="resolve",status="200"}') == 1


def test_gc_freed_and_mirror_metrics(tmp_path: Path) -> None:
    cache = tmp_path / "c"
    repo = Repo("org/up", {"config.json": b"{}", "tokenizer.json": b'{"x":1}', "model.safetensors": os.urandom(100_000)})
    with fault_server(repo) as up:
        mirror = Mirror(Settings(cache_dir=cache), HubClient(up.url))
        cache.mkdir()
        with running_server(cache, mirror=mirror) as url:
            r = httpx.get(f"{url}/{repo.repo_id}/resolve/main/model.safetensors", timeout=30)
            assert r.content == repo.files["model.safetensors"]
            text = httpx.get(f"{url}/metrics").text
            assert metric(text, "modelcache_cache_misses_total") == 1
            assert metric(text, "modelcache_upstream_bytes") == 100_000
            ModelCache(Settings(cache_dir=cache, offline=True)).gc(max_size=1)
            text = httpx.get(f"{url}/metrics").text
            assert metric(text, "modelcache_gc_freed_bytes") >= 100_000


def test_readyz_and_json_logs(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    cache = tmp_path / "c"
    import_demo(cache)
    caplog.set_level(logging.INFO, logger="modelcache.server")
    with running_server(cache, log_json=True) as url:
        assert httpx.get(f"{url}/readyz").json()["ready"] is True
        httpx.get(f"{url}/{REPO}/resolve/main/config.json")
    lines = [json.loads(r.message) for r in caplog.records if r.name == "modelcache.server" and r.message.startswith("{")]
    hit = [x for x in lines if x["path"].endswith("config.json")]
    assert hit and hit[0]["status"] == 200 and hit[0]["kind"] == "resolve" and hit[0]["bytes"] > 0
    with running_server(tmp_path / "absent") as url:  # not there (yet): not ready, and says why
        r = httpx.get(f"{url}/readyz")
        assert r.status_code == 503 and r.json()["ready"] is False and "reason" in r.json()
        assert str(tmp_path) not in r.text  # the path is not shown to callers
