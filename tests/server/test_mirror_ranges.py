"""Crafted ``Range`` headers against a cold mirror (streamed while the fill runs) and a warm one
(answered from the cache): the same answer either way, and never a byte outside the file, a
byte the mirror does not have, or a range padded to its length."""

from __future__ import annotations

import os
import time
from pathlib import Path

import httpx
import pytest
from helpers.fault_server import Repo, fault_server
from test_mirror import assert_stream_cut, kill_upstream_after, mirror_for

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

        killer = kill_upstream_after(up, shard_size // 4)
        a, b = shard_size // 2, shard_size * 3 // 4 - 1  # a range short of the end, beyond the death
        assert_stream_cut(f"{url}/{repo.repo_id}/resolve/{commit}/w.safetensors", {"Range": f"bytes={a}-{b}"})
        killer.join()


def test_a_range_read_across_a_reset_is_cut(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The fill's first attempt fails its digest and starts over (truncating the file) while a
    reader of a range short of the end is between sampling the frontier and reading its last
    piece: what it then reads is neither attempt's verified-frontier bytes (holes where the new
    attempt has not written yet) and must not go out as the end of a complete 206."""
    import os as real_os
    import types

    from helpers.fault_server import Faults

    from modelcache.server import _stream
    from modelcache.settings import Settings
    from modelcache.hub.client import HubClient
    from modelcache.hub.retry import RetryPolicy
    from modelcache.server.mirror import Mirror

    size, chunk = 2 * 1024 * 1024, 256 * 1024
    # the range [first, hold): short of the end (it streams during the fill), clear of the first
    # two chunks (where the first attempt's flipped byte lands), ending half-way into chunk 4,
    # which the second attempt writes side by side with chunk 5 (two connections)
    first, hold = 3 * chunk, 4 * chunk + chunk // 2
    data = real_os.urandom(size)
    repo = Repo("org/resetrace", {"w.safetensors": data})
    cache = tmp_path / "mirror-cache"
    cache.mkdir()
    settings = Settings(cache_dir=cache, connections=2, chunk_size=chunk, retries=3)
    mirror = Mirror(settings, HubClient("http://127.0.0.1:1", retry=RetryPolicy(deadline=0.5)))
    waited: list[bool] = []
    hit: list[bool] = []  # the last piece was read across the reset, into holes

    def pread(fd: int, n: int, pos: int) -> bytes:
        if pos + n == hold and not waited:  # the range's last piece: let the writer reset first
            waited.append(True)
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                fill = next(iter(mirror._fills.values()), None)
                asm = fill.asm if fill is not None else None
                if (asm is not None and asm.resets and real_os.fstat(fd).st_size > hold
                        and not asm.covered(pos, hold)):
                    hit.append(True)
                    break  # restarted, written past our piece, our piece not yet rewritten
                time.sleep(0.002)
        return real_os.pread(fd, n, pos)

    monkeypatch.setattr(_stream, "os", types.SimpleNamespace(pread=pread, close=real_os.close))
    with fault_server(repo, chunk=16 * 1024, delay=0.002) as up:
        up.faults["w.safetensors"] = Faults(corrupt=1)  # the first ranged GET flips a byte
        mirror.client = HubClient(up.url, retry=RetryPolicy(deadline=0.5))
        with running_server(cache, mirror=mirror) as url:
            commit = httpx.get(f"{url}/api/models/{repo.repo_id}/revision/main", timeout=30).json()["sha"]
            try:
                r = httpx.get(f"{url}/{repo.repo_id}/resolve/{commit}/w.safetensors",
                              headers={"Range": f"bytes={first}-{hold - 1}"}, timeout=60)
            except httpx.HTTPError:
                r = None  # cut: the client knows it did not get the range
    assert waited
    if r is not None and r.status_code == 206:
        assert r.content == data[first:hold], "a complete 206 carried bytes read across the reset"
    if not hit:
        pytest.skip("the writer never left the window open (a loaded machine?): nothing was tested")


def test_a_caller_of_a_cold_mirror_is_streamed_the_file_while_the_fill_runs(tmp_path: Path) -> None:
    """The fill fetches in ranges of 1/(connections x 16) of the file (``fill_chunk``), so its
    verified frontier — all a caller can be sent — trails the fetched bytes by little. With the
    engine's 8 MiB ranges, 4 connections fetched this 32 MiB file as 4 ranges at once and the
    frontier stood at 1/8 of it when half was fetched: every caller got the rest in one burst
    after the fill."""
    import threading

    from modelcache.server.mirror import fill_chunk
    from modelcache.settings import Settings

    size = 32 * 1024 * 1024
    assert fill_chunk(size, Settings(cache_dir=tmp_path, connections=4)) == 1024 * 1024
    data = os.urandom(size)
    repo = Repo("org/streamed", {"model.safetensors": data})
    cache = tmp_path / "mirror-cache"
    cache.mkdir()
    received = [0]
    body: list[bytes] = []
    with fault_server(repo, chunk=64 * 1024, delay=0.004) as up, \
            running_server(cache, mirror=mirror_for(cache, up.url)) as url:
        commit = httpx.get(f"{url}/api/models/{repo.repo_id}/revision/main", timeout=30).json()["sha"]

        def client() -> None:
            with httpx.stream("GET", f"{url}/{repo.repo_id}/resolve/{commit}/model.safetensors", timeout=60) as r:
                for piece in r.iter_bytes():
                    body.append(piece)
                    received[0] += len(piece)

        t = threading.Thread(target=client)
        t.start()
        deadline = time.monotonic() + 60
        while up.live_bytes < size // 2:
            assert time.monotonic() < deadline and t.is_alive()
            time.sleep(0.001)
        at_half = received[0]
        t.join(60)
    assert b"".join(body) == data
    assert at_half >= size * 0.3, f"only {at_half / size:.0%} sent when half the file was fetched"
