"""The /resolve hot path answers from memory only while what it remembered still holds."""

from __future__ import annotations

import shutil
from pathlib import Path

import httpx
from helpers.live_server import DEMO_MODEL, DEMO_REPO, import_demo, live_server

from modelcache import ModelCache, Settings
from modelcache.cache.access import Access, write_access
from modelcache.cache.importer import import_folder
from modelcache.cache.layout import RepoLayout


def _get(url: str, path: str = "config.json", rev: str = "main") -> httpx.Response:
    return httpx.get(f"{url}/{DEMO_REPO}/resolve/{rev}/{path}", timeout=10)


def test_a_moved_ref_is_seen_at_once(tmp_path: Path) -> None:
    cache = tmp_path / "c"
    first = import_demo(cache)
    changed = tmp_path / "changed"
    shutil.copytree(DEMO_MODEL, changed)
    (changed / "config.json").write_text('{"model_type": "llama", "changed": true}')
    with live_server(cache) as url:
        for _ in range(3):
            r = _get(url)
            assert r.headers["X-Repo-Commit"] == first.commit
        second = import_folder(RepoLayout(cache, "model", DEMO_REPO), changed, revision="main")
        r = _get(url)
        assert r.headers["X-Repo-Commit"] == second.commit and b"changed" in r.content
        assert _get(url, rev=first.commit).content == (DEMO_MODEL / "config.json").read_bytes()


def test_removed_revisions_and_files_are_not_served_from_memory(tmp_path: Path) -> None:
    cache = tmp_path / "c"
    record = import_demo(cache)
    with live_server(cache) as url:
        assert _get(url).status_code == 200 and _get(url, rev=record.commit).status_code == 200
        assert httpx.head(f"{url}/{DEMO_REPO}/resolve/main/config.json").status_code == 200
        ModelCache(Settings(cache_dir=cache, offline=True)).rm(DEMO_REPO)
        assert _get(url).status_code == 404
        assert _get(url, rev=record.commit).status_code == 404
        assert httpx.head(f"{url}/{DEMO_REPO}/resolve/main/config.json").status_code == 404


def test_a_repo_made_gated_is_refused_on_the_next_request(tmp_path: Path) -> None:
    cache = tmp_path / "c"
    import_demo(cache)
    with live_server(cache) as url:
        assert _get(url).status_code == 200
        write_access(RepoLayout(cache, "model", DEMO_REPO), Access(gated=True))
        r = _get(url)
        assert r.status_code == 401 and r.headers["X-Error-Code"] == "GatedRepo"


def test_head_and_ranges_on_a_remembered_file(tmp_path: Path) -> None:
    cache = tmp_path / "c"
    record = import_demo(cache)
    data = (DEMO_MODEL / "tokenizer.json").read_bytes()
    with live_server(cache) as url:
        assert _get(url, "tokenizer.json").content == data
        h = httpx.head(f"{url}/{DEMO_REPO}/resolve/main/tokenizer.json")
        assert h.status_code == 200 and int(h.headers["content-length"]) == len(data) and h.content == b""
        assert h.headers["X-Repo-Commit"] == record.commit and h.headers["ETag"].startswith('"')
        r = httpx.get(f"{url}/{DEMO_REPO}/resolve/main/tokenizer.json", headers={"Range": "bytes=2-9"})
        assert r.status_code == 206 and r.content == data[2:10]
