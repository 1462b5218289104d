"""Slow disk work for one request never holds ``serve``'s event loop: a snapshot without a
record (a co-tenant's planted huge, sparse, copied-in file) is walked and hashed off the loop,
so ``/healthz`` and every other client keep being answered meanwhile."""

from __future__ import annotations

import threading
from pathlib import Path

import httpx
import pytest
from helpers.live_server import live_server

from modelcache.server import _index

COMMIT = "ab" * 20


def _plant_recordless_snapshot(cache: Path) -> None:
    repo = cache / "models--org--m"
    snap = repo / "snapshots" / COMMIT
    snap.mkdir(parents=True)
    for d in ("refs", "blobs"):
        (repo / d).mkdir()
    (snap / "config.json").write_text("{}")
    with open(snap / "big.bin", "wb") as fh:  # a copied-in file: only known by hashing it
        fh.truncate(1 << 20)


@pytest.mark.parametrize("path", [f"/api/models/org/m/revision/{COMMIT}", f"/org/m/resolve/{COMMIT}/config.json",
                                  f"/api/models/org/m/tree/{COMMIT}"])
def test_hashing_a_recordless_snapshot_does_not_block_healthz(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                              path: str) -> None:
    cache = tmp_path / "cache"
    _plant_recordless_snapshot(cache)
    entered, release = threading.Event(), threading.Event()
    real = _index._content_sha1

    def slow_disk(real_path: str, size: int) -> str:  # a multi-GB file on a slow volume
        entered.set()
        release.wait(20)
        return real(real_path, size)

    monkeypatch.setattr(_index, "_content_sha1", slow_disk)
    with live_server(cache) as url:
        result: dict[str, int] = {}
        th = threading.Thread(target=lambda: result.setdefault("status", httpx.get(url + path, timeout=30).status_code))
        th.start()
        try:
            assert entered.wait(10)
            r = httpx.get(url + "/healthz", timeout=3)  # blocked loop: ReadTimeout
            assert r.status_code == 200
        finally:
            release.set()
            th.join(30)
        assert result.get("status") == 200
