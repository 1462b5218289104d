"""The mirror against a failing, rate-limited or restarting upstream, and several mirrors on one volume."""

from __future__ import annotations

import hashlib
import threading
import time
from pathlib import Path

import httpx
from helpers.fault_server import Repo, fault_server
from helpers.repos import model_repo
from helpers.procs import serve_process, stop

from modelcache import ModelCache, Settings
from modelcache.hub.client import HubClient
from modelcache.hub.retry import RetryPolicy
from modelcache.server.background import running_server
from modelcache.server.mirror import Mirror

MiB = 1024 * 1024


def _repo(shard: int = 256 * 1024) -> Repo:
    return model_repo("org/m", weights=shard)


def _mirror(cache: Path, url: str, **kw: object) -> Mirror:
    return Mirror(Settings(cache_dir=cache, retries=1, connections=4), HubClient(url, retry=RetryPolicy(deadline=0.5)), **kw)  # type: ignore[arg-type]


def _api_calls(up) -> int:  # type: ignore[no-untyped-def]
    return sum(1 for e in up.log if e.path.startswith("/api/"))


def test_a_failing_upstream_is_503_with_retry_after_never_404(tmp_path: Path) -> None:
    repo = _repo()
    cache = tmp_path / "c"
    with fault_server(repo) as up, running_server(cache, mirror=_mirror(cache, up.url)) as url:
        for status in (503, 500, 429):
            up.api_statuses = [status] * 50
            r = httpx.get(f"{url}/api/models/{repo.repo_id}/revision/main", timeout=30)
            assert r.status_code == 503, (status, r.status_code)
            assert r.headers["X-Error-Code"] == "UpstreamUnavailable" and int(r.headers["Retry-After"]) >= 1
            r = httpx.get(f"{url}/{repo.repo_id}/resolve/main/config.json", timeout=30)
            assert r.status_code == 503
        up.api_statuses = []
        r = httpx.get(f"{url}/{repo.repo_id}/resolve/main/config.json", timeout=30)
        assert r.status_code == 200 and r.content == repo.files["config.json"]
        # a real "not found" stays a 404
        r = httpx.get(f"{url}/api/models/org/absent/revision/main", timeout=30)
        assert r.status_code == 404 and r.headers["X-Error-Code"] == "RepoNotFound"


def test_a_failing_upstream_falls_back_to_the_cache(tmp_path: Path) -> None:
    repo = _repo()
    cache = tmp_path / "c"
    with fault_server(repo) as up, running_server(cache, mirror=_mirror(cache, up.url, ttl=0)) as url:
        assert httpx.get(f"{url}/{repo.repo_id}/resolve/main/config.json", timeout=30).status_code == 200
        up.api_statuses = [503] * 50
        r = httpx.get(f"{url}/{repo.repo_id}/resolve/main/config.json", timeout=30)
        assert r.status_code == 200 and r.content == repo.files["config.json"]


def test_gc_on_a_running_mirror_makes_it_ask_again_not_404(tmp_path: Path) -> None:
    repo = _repo()
    cache = tmp_path / "c"
    with fault_server(repo) as up, running_server(cache, mirror=_mirror(cache, up.url, ttl=3600)) as url:
        for p, data in repo.files.items():
            assert httpx.get(f"{url}/{repo.repo_id}/resolve/main/{p}", timeout=30).content == data
        ModelCache(Settings(cache_dir=cache, offline=True)).rm(repo.repo_id)
        for p, data in repo.files.items():
            r = httpx.get(f"{url}/{repo.repo_id}/resolve/main/{p}", timeout=30)
            assert r.status_code == 200 and r.content == data
        info = httpx.get(f"{url}/api/models/{repo.repo_id}/revision/main", timeout=30)
        assert info.status_code == 200 and info.json()["sha"] == repo.commit


def test_cold_mirror_asks_upstream_once_for_sixteen_clients(tmp_path: Path) -> None:
    repo = _repo()
    cache = tmp_path / "c"
    statuses: list[int] = []
    with fault_server(repo, delay=0.001) as up, running_server(cache, mirror=_mirror(cache, up.url)) as url:
        def client() -> None:
            with httpx.Client(timeout=60) as c:
                statuses.append(c.get(f"{url}/{repo.repo_id}/resolve/main/model.safetensors").status_code)

        threads = [threading.Thread(target=client) for _ in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert statuses == [200] * 16
        assert _api_calls(up) == 2  # one revision lookup + one tree listing
        assert up.bytes_served("model.safetensors") == len(repo.files["model.safetensors"])


def test_upstream_bytes_metric_counts_what_the_upstream_sent(tmp_path: Path) -> None:
    repo = _repo(MiB)
    cache = tmp_path / "c"
    with fault_server(repo) as up:
        mirror = _mirror(cache, up.url)
        with running_server(cache, mirror=mirror) as url:
            for p in repo.files:
                assert httpx.get(f"{url}/{repo.repo_id}/resolve/main/{p}", timeout=30).status_code == 200
            assert mirror.stats.upstream_bytes == up.bytes_served()


def test_two_mirror_replicas_on_one_volume_fetch_each_blob_once(tmp_path: Path) -> None:
    """HA mirror: replicas (here: two processes, one of them with two workers) share fills
    through the cache's lock files."""
    repo = _repo(8 * MiB)
    cache = tmp_path / "shared"
    with fault_server(repo, chunk=64 * 1024, delay=0.002) as up:
        results: list[tuple[int, bytes]] = []
        with serve_process(cache, "--upstream", up.url) as (_a, url_a), \
                serve_process(cache, "--upstream", up.url, "--workers", "2") as (_b, url_b):
            def client(url: str) -> None:
                r = httpx.get(f"{url}/{repo.repo_id}/resolve/main/model.safetensors", timeout=120)
                results.append((r.status_code, r.content))

            threads = [threading.Thread(target=client, args=(u,)) for u in (url_a, url_b, url_a, url_b)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(120)
        assert [s for s, _ in results] == [200] * 4
        assert all(body == repo.files["model.safetensors"] for _, body in results)
        size = len(repo.files["model.safetensors"])
        assert up.bytes_served("model.safetensors") <= 1.1 * size
    blob = cache / "models--org--m" / "blobs" / repo.etag("model.safetensors")
    assert hashlib.sha256(blob.read_bytes()).hexdigest() == repo.etag("model.safetensors")


def test_an_upstream_outage_logs_one_line_per_failure(tmp_path: Path) -> None:
    repo = _repo(4 * MiB)
    cache = tmp_path / "c"
    with fault_server(repo, chunk=32 * 1024, delay=0.005) as up:
        with serve_process(cache, "--upstream", up.url) as (proc, url):
            def kill_soon() -> None:
                deadline = time.monotonic() + 30
                while up.live_bytes < MiB and time.monotonic() < deadline:
                    time.sleep(0.005)
                up.dead = True

            killer = threading.Thread(target=kill_soon)
            killer.start()
            try:
                with httpx.stream("GET", f"{url}/{repo.repo_id}/resolve/main/model.safetensors", timeout=60) as r:
                    b"".join(r.iter_bytes())
            except httpx.HTTPError:
                pass
            killer.join()
            err = stop(proc)
    assert "Traceback" not in err, err
    assert "aborted a response" in err
