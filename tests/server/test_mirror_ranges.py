"""Crafted ``Range`` headers against a cold mirror (streamed while the fill runs) and a warm one
(answered from the cache): the same answer either way, and never a byte outside the file, a
byte the mirror does not have, or a range padded to its length."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import httpx
import pytest
from helpers.fault_server import Repo, fault_server
from test_mirror import mirror_for

from modelcache.server.background import running_server

SIZE = 300_000
RANGES = ["bytes=0-", "bytes=-0", "bytes=-1", "bytes=0-0", f"bytes={SIZE - 1}-{SIZE - 1}", f"bytes={SIZE}-",
          "bytes=5-3", "bytes=-99999999", "bytes=0-99999999999999999999", "bytes=99999999999999999999999-",
          "bytes=1_0-2_0", "Bytes=0-1", "bytes=0-1,2-3", "bytes=0-,0-,0-", "bytes=x-y", "bytes=-", "bytes=",
          "bytes=1-1-1", f"bytes=0-{SIZE - 2}", f"bytes={SIZE - 1}-"]


def _answer(r: httpx.Response, data: bytes) -> tuple[int, str | None, bool]:
    """(status, Content-Range, whether the body is exactly the bytes that header names)."""
    if r.status_code == 206:
        cr = r.headers["content-range"]
        span, _, total = cr[6:].partition("/")
        a, _, b = span.partition("-")
        return 206, cr, total == str(len(data)) and r.content == data[int(a):int(b) + 1]
    if r.status_code == 200:
        return 200, None, r.content == data
    return r.status_code, None, True


def test_crafted_ranges_get_the_same_answer_during_a_fill_as_from_the_cache(tmp_path: Path) -> None:
    files = {f"s{i:02d}.safetensors": os.urandom(SIZE) for i in range(len(RANGES))}
    repo = Repo("org/ranges", files)
    cache = tmp_path / "mirror-cache"
    cache.mkdir()
    with fault_server(repo, chunk=16 * 1024, delay=0.002) as up, \
            running_server(cache, mirror=mirror_for(cache, up.url)) as url:
        commit = httpx.get(f"{url}/api/models/{repo.repo_id}/revision/main", timeout=30).json()["sha"]
        for header, (path, data) in zip(RANGES, sorted(files.items())):
            target = f"{url}/{repo.repo_id}/resolve/{commit}/{path}"
            cold = _answer(httpx.get(target, headers={"Range": header}, timeout=60), data)
            warm = _answer(httpx.get(target, headers={"Range": header}, timeout=60), data)
            assert cold[2] and warm[2], (header, cold, warm)  # every body is what its headers say
            assert cold == warm, header
            assert up.bytes_served(path) == SIZE  # (one fill; the warm answer came from the cache)


def test_a_range_past_what_a_dying_upstream_sent_is_cut_not_padded(tmp_path: Path) -> None:
    shard_size = 2 * 1024 * 1024
    repo = Repo("org/dying", {"w.safetensors": os.urandom(shard_size)})
    cache = tmp_path / "mirror-cache"
    cache.mkdir()
    with fault_server(repo, chunk=32 * 1024, delay=0.01) as up, \
            running_server(cache, mirror=mirror_for(cache, up.url, retries=1)) as url:
        commit = httpx.get(f"{url}/api/models/{repo.repo_id}/revision/main", timeout=30).json()["sha"]

        def kill_soon() -> None:
            while up.live_bytes < shard_size // 4:
                time.sleep(0.005)
            up.dead = True

        killer = threading.Thread(target=kill_soon)
        killer.start()
        a, b = shard_size // 2, shard_size * 3 // 4 - 1  # a range short of the end, beyond the death
        with pytest.raises(httpx.HTTPError):
            with httpx.stream("GET", f"{url}/{repo.repo_id}/resolve/{commit}/w.safetensors",
                              headers={"Range": f"bytes={a}-{b}"}, timeout=60) as r:
                if r.status_code != 206:
                    raise httpx.HTTPError(f"status {r.status_code}")
                body = b"".join(r.iter_bytes())
                assert len(body) < b + 1 - a  # unreachable: the stream must fail first
        killer.join()
