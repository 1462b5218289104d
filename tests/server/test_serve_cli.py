"""`modelcache serve` as users start it: a real process, one or several workers."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from helpers.live_server import import_demo
from helpers.procs import serve_process

REPO = "modelcache/tiny-llama"


@pytest.mark.parametrize("workers", [1, 2])
def test_serve_process(tmp_path: Path, workers: int) -> None:
    cache = tmp_path / "c"
    record = import_demo(cache)
    with serve_process(cache, "--workers", str(workers)) as (_proc, url):
        for _ in range(4):
            r = httpx.get(f"{url}/{REPO}/resolve/main/config.json")
            assert r.status_code == 200 and r.headers["X-Repo-Commit"] == record.commit


def test_serve_on_a_fresh_volume_creates_the_cache_and_is_ready(tmp_path: Path) -> None:
    cache = tmp_path / "fresh" / "hub"
    with serve_process(cache, ready_path="/readyz") as (_proc, url):
        r = httpx.get(f"{url}/readyz", timeout=5)
        assert r.status_code == 200 and r.json() == {"ready": True}
        assert cache.is_dir()
        r = httpx.get(f"{url}/{REPO}/resolve/main/config.json")
        assert r.status_code == 404 and r.headers["X-Error-Code"] == "RepoNotFound"
