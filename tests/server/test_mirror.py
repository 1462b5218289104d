"""`modelcache serve --upstream`: a read-through mirror in front of an HF-compatible upstream."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from pathlib import Path

import httpx
import pytest
from helpers.fault_server import Repo, fault_server

from modelcache import ModelCache, Settings
from modelcache.hub.client import HubClient
from modelcache.hub.retry import RetryPolicy
from modelcache.server.mirror import Mirror
from modelcache.server.background import running_server

MiB = 1024 * 1024


def upstream_model(shard: int = MiB) -> Repo:
    files = {"config.json": b'{"model_type": "llama"}', "tokenizer.json": b'{"model": {"type": "BPE"}}'}
    for i in range(3):
        block = hashlib.sha256(b"shard%d" % i).digest() * 2048
        files[f"model-0000{i + 1}-of-00003.safetensors"] = (block * (shard // len(block) + 1))[:shard]
    # shards count as weights only through an index naming them (issue #12)
    index = {"weight_map": {f"w{i}": f"model-0000{i + 1}-of-00003.safetensors" for i in range(3)}}
    files["model.safetensors.index.json"] = json.dumps(index).encode()
    return Repo("org/upstream-only", files)


def mirror_for(cache: Path, url: str, *, offline: bool = False, retries: int = 5, **kw: object) -> Mirror:
    settings = Settings(cache_dir=cache, offline=offline, retries=retries, connections=4)
    return Mirror(settings, HubClient(url, connections=32, retry=RetryPolicy(deadline=0.5)), **kw)  # type: ignore[arg-type]


def kill_upstream_after(up, n: int) -> threading.Thread:  # type: ignore[no-untyped-def]
    """A started thread that makes ``up`` drop every connection once it has sent ``n`` body bytes."""
    def kill_soon() -> None:
        while up.live_bytes < n:
            time.sleep(0.005)
        up.dead = True

    killer = threading.Thread(target=kill_soon)
    killer.start()
    return killer


def assert_stream_cut(url: str, headers: dict[str, str] | None = None, status: int = 206) -> None:
    """GET ``url`` as a stream: it must fail (connection cut short of Content-Length), never end
    as a whole answer with ``status``."""
    with pytest.raises(httpx.HTTPError):
        with httpx.stream("GET", url, headers=headers or {}, timeout=60) as r:
            if r.status_code != status:
                raise httpx.HTTPError(f"status {r.status_code}")
            b"".join(r.iter_bytes())
            pytest.fail("the stream ended whole")  # unreachable: the stream must fail first


def _resolve_gets(srv) -> int:  # type: ignore[no-untyped-def]
    return sum(1 for e in srv.log if "/resolve/" in e.path and e.method == "GET")


def test_hf_client_through_the_mirror(tmp_path: Path) -> None:
    from huggingface_hub import snapshot_download

    repo = upstream_model()
    cache = tmp_path / "mirror-cache"
    cache.mkdir()
    with fault_server(repo) as up, running_server(cache, mirror=mirror_for(cache, up.url, ttl=60)) as url:
        first = Path(snapshot_download(repo.repo_id, endpoint=url, cache_dir=tmp_path / "client1", token=False))
        for p, data in repo.files.items():
            assert (first / p).read_bytes() == data
        requests_after_first = len(up.log)
        second = Path(snapshot_download(repo.repo_id, endpoint=url, cache_dir=tmp_path / "client2", token=False))
        assert len(up.log) == requests_after_first  # served from the mirror's cache: no upstream traffic
        assert all((second / p).read_bytes() == d for p, d in repo.files.items())
        assert up.bytes_served() == sum(len(d) for d in repo.files.values())
    # the mirror's own cache is a complete, checkable modelcache cache
    assert ModelCache(Settings(cache_dir=cache, offline=True)).check(repo.repo_id).ready


def test_sixteen_clients_one_upstream_fetch_per_file(tmp_path: Path) -> None:
    repo = upstream_model(2 * MiB)
    cache = tmp_path / "mirror-cache"
    cache.mkdir()
    results: dict[int, dict[str, bytes]] = {}
    errors: list[str] = []
    with fault_server(repo, chunk=64 * 1024, delay=0.002) as up, \
            running_server(cache, mirror=mirror_for(cache, up.url)) as url:
        info = httpx.get(f"{url}/api/models/{repo.repo_id}/revision/main", timeout=30).json()
        commit = info["sha"]

        def client(i: int) -> None:
            got = {}
            with httpx.Client(timeout=60) as c:
                for p in sorted(repo.files):
                    r = c.get(f"{url}/{repo.repo_id}/resolve/{commit}/{p}")
                    if r.status_code != 200:
                        errors.append(f"{i} {p} {r.status_code}")
                    got[p] = r.content
            results[i] = got

        threads = [threading.Thread(target=client, args=(i,)) for i in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        for p, data in repo.files.items():
            assert up.bytes_served(p) == len(data), p  # each file came from upstream exactly once
    assert errors == []
    assert len(results) == 16
    for got in results.values():
        assert got == repo.files


def test_upstream_dies_half_way(tmp_path: Path) -> None:
    repo = upstream_model(2 * MiB)
    cache = tmp_path / "mirror-cache"
    cache.mkdir()
    shard = "model-00001-of-00003.safetensors"
    with fault_server(repo, chunk=32 * 1024, delay=0.01) as up, \
            running_server(cache, mirror=mirror_for(cache, up.url, retries=1)) as url:
        commit = httpx.get(f"{url}/api/models/{repo.repo_id}/revision/main").json()["sha"]

        killer = kill_upstream_after(up, MiB // 2)
        with pytest.raises(httpx.HTTPError):  # an error, not a short file taken for a whole one
            with httpx.stream("GET", f"{url}/{repo.repo_id}/resolve/{commit}/{shard}", timeout=60) as r:
                assert r.status_code == 200
                body = b"".join(r.iter_bytes())
                assert len(body) == len(repo.files[shard])  # unreachable: the stream must fail first
        killer.join()
        served_before = up.bytes_served(shard)
        assert 0 < served_before < len(repo.files[shard])
        up.dead = False
        up.delay = 0
        r = httpx.get(f"{url}/{repo.repo_id}/resolve/{commit}/{shard}", timeout=60)
        assert r.status_code == 200 and r.content == repo.files[shard]
        # the second fill resumed: the upstream sent (about) the missing part only
        assert up.bytes_served(shard) - served_before < len(repo.files[shard])


def test_offline_mirror_serves_only_the_cache(tmp_path: Path) -> None:
    repo = upstream_model(64 * 1024)
    cache = tmp_path / "mirror-cache"
    cache.mkdir()
    with fault_server(repo) as up:
        with running_server(cache, mirror=mirror_for(cache, up.url, offline=True)) as url:
            r = httpx.get(f"{url}/api/models/{repo.repo_id}/revision/main")
            assert r.status_code == 404 and r.headers["X-Error-Code"] == "RepoNotFound"
        assert up.log == []


def test_allow_and_deny_lists(tmp_path: Path) -> None:
    repo = upstream_model(64 * 1024)
    cache = tmp_path / "mirror-cache"
    cache.mkdir()
    with fault_server(repo) as up:
        with running_server(cache, mirror=mirror_for(cache, up.url, allow=["org/*"], deny=["org/upstream-*"])) as url:
            r = httpx.get(f"{url}/api/models/{repo.repo_id}/revision/main")
            assert r.status_code == 403 and "policy" in r.headers["X-Error-Message"]
        assert up.log == []
        with running_server(cache, mirror=mirror_for(cache, up.url, allow=["org/*"])) as url:
            assert httpx.get(f"{url}/api/models/{repo.repo_id}/revision/main").status_code == 200


def test_revision_lookups_are_cached_for_the_ttl(tmp_path: Path) -> None:
    repo = upstream_model(64 * 1024)
    cache = tmp_path / "mirror-cache"
    cache.mkdir()
    with fault_server(repo) as up, running_server(cache, mirror=mirror_for(cache, up.url, ttl=60)) as url:
        for _ in range(5):
            assert httpx.get(f"{url}/api/models/{repo.repo_id}/revision/main").status_code == 200
        assert sum(1 for e in up.log if "/revision/" in e.path) == 1
        r = httpx.get(f"{url}/api/models/org/unknown/revision/main")
        assert r.status_code == 404 and r.headers["X-Error-Code"] == "RepoNotFound"


def test_ranges_stream_while_the_mirror_fills_and_the_last_byte_waits_for_verification(tmp_path: Path) -> None:
    """A range short of the file's end is answered as the verified frontier passes it (a client
    assembling ranges gets its bytes during the fill); the range holding the file's last byte
    completes only once the whole file is verified."""
    repo = upstream_model(2 * MiB)
    cache = tmp_path / "mirror-cache"
    cache.mkdir()
    shard = "model-00001-of-00003.safetensors"
    data = repo.files[shard]
    with fault_server(repo, chunk=32 * 1024, delay=0.01) as up, \
            running_server(cache, mirror=mirror_for(cache, up.url)) as url:
        commit = httpx.get(f"{url}/api/models/{repo.repo_id}/revision/main", timeout=30).json()["sha"]
        target = f"{url}/{repo.repo_id}/resolve/{commit}/{shard}"
        r = httpx.get(target, headers={"Range": "bytes=0-262143"}, timeout=60)
        upstream_then = up.live_bytes  # what the upstream had sent when the range was answered
        assert r.status_code == 206 and r.content == data[:262144]
        assert r.headers["content-range"] == f"bytes 0-262143/{len(data)}"
        assert upstream_then < len(data)  # answered before the fill had the whole file
        r = httpx.get(target, headers={"Range": "bytes=-1000"}, timeout=60)
        assert r.status_code == 206 and r.content == data[-1000:]
        assert up.live_bytes >= len(data)  # the last byte waited for the whole (verified) file
        r = httpx.get(target, headers={"Range": "bytes=5-9, 20-30"}, timeout=60)  # several: from the cache
        assert r.status_code in (200, 206)


def test_a_corrupt_fill_cuts_the_range_holding_the_last_byte(tmp_path: Path) -> None:
    from helpers.fault_server import Faults

    repo = upstream_model(2 * MiB)
    cache = tmp_path / "mirror-cache"
    cache.mkdir()
    shard = "model-00001-of-00003.safetensors"
    with fault_server(repo, chunk=64 * 1024, delay=0.002) as up, \
            running_server(cache, mirror=mirror_for(cache, up.url, retries=1)) as url:
        up.faults[shard] = Faults(corrupt=100)
        commit = httpx.get(f"{url}/api/models/{repo.repo_id}/revision/main", timeout=30).json()["sha"]
        size = len(repo.files[shard])
        assert_stream_cut(f"{url}/{repo.repo_id}/resolve/{commit}/{shard}", {"Range": f"bytes={size // 2}-"})
    assert not (ModelCache(Settings(cache_dir=cache, offline=True)).layout(repo.repo_id).blob(repo.etag(shard))).exists()


def test_a_branch_moved_upstream_is_seen_through_remembered_files(tmp_path: Path) -> None:
    """Hits a mirror remembers by branch still ask the upstream (TTL) where the branch is now:
    none is answered before the revision check, neither by the app nor by the protocol."""
    repo = upstream_model(64 * 1024)
    cache = tmp_path / "mirror-cache"
    cache.mkdir()
    with fault_server(repo) as up, running_server(cache, mirror=mirror_for(cache, up.url, ttl=0)) as url:
        for _ in range(3):
            r = httpx.get(f"{url}/{repo.repo_id}/resolve/main/config.json")
            assert r.content == repo.files["config.json"] and r.headers["X-Repo-Commit"] == repo.commit
        up.repo = moved = Repo(repo.repo_id, {**repo.files, "config.json": b'{"model_type": "moved"}'}, commit="d" * 40)
        for method in ("HEAD", "GET"):
            r = httpx.request(method, f"{url}/{repo.repo_id}/resolve/main/config.json")
            assert r.status_code == 200 and r.headers["X-Repo-Commit"] == moved.commit
        assert r.content == moved.files["config.json"]
        r = httpx.get(f"{url}/{repo.repo_id}/resolve/{repo.commit}/config.json")  # the old commit: still there
        assert r.content == repo.files["config.json"]
        assert httpx.get(f"{url}/{repo.repo_id}/resolve/{repo.commit}/config.json").content == repo.files["config.json"]


@pytest.mark.parametrize("zero_copy", [True, False], ids=["sendfile", "read-pieces"])
def test_fill_bodies_with_and_without_zero_copy(tmp_path: Path, zero_copy: bool) -> None:
    """A fill is sent by sendfile where the server offers it (``serve``), in read pieces where it
    does not (any other ASGI server: here Starlette's TestClient); an empty file too."""
    from starlette.testclient import TestClient

    from modelcache.server import create_app

    repo = upstream_model(MiB)
    repo.files["empty.txt"] = b""
    cache = tmp_path / "mirror-cache"
    cache.mkdir()
    shard = "model-00002-of-00003.safetensors"
    with fault_server(repo, chunk=64 * 1024, delay=0.001) as up:
        if zero_copy:
            ctx = running_server(cache, mirror=mirror_for(cache, up.url))
        else:
            ctx = TestClient(create_app(cache, mirror=mirror_for(cache, up.url)), base_url="http://mirror")
        with ctx as where:
            client = httpx.Client(base_url=where, timeout=60) if zero_copy else where
            commit = client.get(f"/api/models/{repo.repo_id}/revision/main").json()["sha"]
            r = client.get(f"/{repo.repo_id}/resolve/{commit}/{shard}", headers={"Range": "bytes=1000-"})
            assert r.status_code == 206 and r.content == repo.files[shard][1000:]
            r = client.get(f"/{repo.repo_id}/resolve/{commit}/empty.txt")
            assert r.status_code == 200 and r.content == b""
            other = "model-00003-of-00003.safetensors"
            r = client.get(f"/{repo.repo_id}/resolve/{commit}/{other}")
            assert r.status_code == 200 and r.content == repo.files[other]
