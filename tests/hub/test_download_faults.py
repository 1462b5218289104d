"""Downloads against a misbehaving upstream: complete and verified, or a clear error — never a
corrupt or partial file in snapshots/."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
from helpers.fault_server import Faults, Repo, fault_server
from helpers.repos import assert_snapshot_is

from modelcache import ModelCache, Settings, TokenSource
from modelcache.errors import (
    EndpointUnreachable,
    EntryNotFound,
    IntegrityError,
    ProtocolError,
    RepoNotFound,
    TransientError,
)
from modelcache.hub.download.assembly import state_path_for

TOKEN = "hf_testTOKENdownloadFaults0123456789"


def make_repo(size: int = 300_000) -> Repo:
    rnd = hashlib.sha256(b"seed").digest() * (size // 32 + 1)
    return Repo(
        "org/faulty",
        {
            "config.json": b'{"model_type": "llama"}',
            "tokenizer.json": b'{"model": {"type": "WordLevel"}}',
            "model.safetensors": rnd[:size],
            "nested/extra.txt": b"hello",
        },
    )


def cache_for(tmp_path: Path, url: str, token: str | None = TOKEN, retries: int = 5,
              chunk_size: int = 16 * 1024 * 1024, connections: int = 8, timeout: float = 5,
              raw_http: bool = True, small_file_bytes: int = 0) -> ModelCache:
    """(``small_file_bytes`` 0: every file takes the resumable path, which most tests here are about.)"""
    s = Settings(cache_dir=tmp_path / "cache", endpoint=url, token=TokenSource(value=token, origin="test"),
                 retries=retries, timeout=timeout, chunk_size=chunk_size, connections=connections, raw_http=raw_http,
                 retry_base=0.01, retry_cap=0.2,  # the backoff is a setting: fast here, nothing patched
                 small_file_bytes=small_file_bytes)
    return ModelCache(s)


def assert_snapshot_matches(mc: ModelCache, repo: Repo) -> None:
    assert_snapshot_is(mc, repo)


def snapshot_files(mc: ModelCache, repo: Repo) -> dict[str, bytes]:
    snap = mc.layout(repo.repo_id).snapshot(repo.commit)
    if not snap.exists():
        return {}
    return {p.relative_to(snap).as_posix(): p.read_bytes() for p in snap.rglob("*") if p.is_file()}


TRANSIENT = pytest.mark.parametrize(
    "faults",
    [
        Faults(truncate=2),
        Faults(corrupt=1),
        Faults(statuses=[500, 503, 502]),
        Faults(statuses=[429], retry_after="0"),
        Faults(wrong_range=1, truncate=1),
        Faults(ignore_range=True, truncate=1),
        Faults(extra_bytes=1),
    ],
    ids=["truncated", "corrupt-byte", "5xx", "429-retry-after", "wrong-content-range", "ignored-range", "too-long"],
)
SMALL = 1024 * 1024  # Settings' default: files up to it are fetched whole, in memory


@TRANSIENT
@pytest.mark.parametrize("raw_http", [True, False], ids=["socket", "httpx"])
def test_transient_faults_on_small_files_in_memory(tmp_path: Path, faults: Faults, raw_http: bool) -> None:
    """The in-memory path (no partial, no lock) retries the same faults and installs only verified bytes."""
    repo = make_repo()
    with fault_server(repo) as srv:
        srv.faults["model.safetensors"] = faults
        with cache_for(tmp_path, srv.url, connections=4, raw_http=raw_http, small_file_bytes=SMALL) as mc:
            mc.download(repo.repo_id)
        assert_snapshot_matches(mc, repo)
        blobs = mc.layout(repo.repo_id).blobs
        assert not list(blobs.glob("*.incomplete")) and not list(blobs.glob("*.mc.state"))


@TRANSIENT
@pytest.mark.parametrize("chunk", [16 * 1024 * 1024, 64 * 1024], ids=["whole", "chunked"])
@pytest.mark.parametrize("raw_http", [True, False], ids=["socket", "httpx"])
def test_transient_faults_end_complete_and_verified(tmp_path: Path, faults: Faults, chunk: int, raw_http: bool) -> None:
    repo = make_repo()
    with fault_server(repo) as srv:
        srv.faults["model.safetensors"] = faults
        with cache_for(tmp_path, srv.url, chunk_size=chunk, connections=4, raw_http=raw_http) as mc:
            result = mc.download(repo.repo_id)
        assert result.commit == repo.commit
        assert_snapshot_matches(mc, repo)
        assert not list((mc.layout(repo.repo_id).blobs).glob("*.incomplete"))


def test_truncated_body_resumes_with_range(tmp_path: Path) -> None:
    repo = make_repo(1_000_000)
    with fault_server(repo) as srv:
        srv.faults["model.safetensors"] = Faults(truncate=1)
        with cache_for(tmp_path, srv.url) as mc:
            mc.download(repo.repo_id)
        ranges = [e.range for e in srv.log if e.path.endswith("model.safetensors") and e.method == "GET"]
        assert ranges[0] is None and ranges[1] == "bytes=500000-999999"
        # the second request asked only for the missing half
        assert srv.bytes_served("model.safetensors") == 1_000_000


@pytest.mark.parametrize("small", [0, SMALL], ids=["resumable", "in-memory"])
def test_persistent_corruption_fails_with_nothing_visible(tmp_path: Path, small: int) -> None:
    repo = make_repo()
    with fault_server(repo) as srv:
        srv.faults["model.safetensors"] = Faults(corrupt=100)
        with cache_for(tmp_path, srv.url, small_file_bytes=small) as mc, pytest.raises(IntegrityError) as err:
            mc.download(repo.repo_id)
        assert "sha256" in str(err.value)
        files = snapshot_files(mc, repo)
        assert "model.safetensors" not in files
        for p, data in files.items():
            assert data == repo.files[p]
        assert not mc.check(repo.repo_id).ready
        assert not mc.layout(repo.repo_id).ref("main").exists()


@pytest.mark.parametrize("small", [0, SMALL], ids=["resumable", "in-memory"])
def test_persistent_500_gives_up_with_clear_error(tmp_path: Path, small: int) -> None:
    repo = make_repo()
    with fault_server(repo) as srv:
        srv.faults["model.safetensors"] = Faults(statuses=[500] * 50)
        with cache_for(tmp_path, srv.url, retries=2, small_file_bytes=small) as mc, pytest.raises(TransientError) as err:
            mc.download(repo.repo_id)
        assert "HTTP 500" in str(err.value)
        assert "model.safetensors" not in snapshot_files(mc, repo)


def test_404_on_file_fails_at_once(tmp_path: Path) -> None:
    repo = make_repo()
    with fault_server(repo) as srv:
        srv.tree_override = repo.tree() + [{"type": "file", "path": "ghost.bin", "size": 3, "oid": "a" * 40,
                                            "lfs": {"oid": "b" * 64, "size": 3}}]
        with cache_for(tmp_path, srv.url) as mc, pytest.raises(EntryNotFound):
            mc.download(repo.repo_id)
        assert sum(1 for e in srv.log if "ghost.bin" in e.path) == 1


def test_unknown_repo_is_repo_not_found(tmp_path: Path) -> None:
    with fault_server(make_repo()) as srv, cache_for(tmp_path, srv.url) as mc:
        with pytest.raises(RepoNotFound):
            mc.download("org/other")


def test_unreachable_endpoint(tmp_path: Path) -> None:
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    with cache_for(tmp_path, f"http://127.0.0.1:{port}") as mc, pytest.raises(EndpointUnreachable) as err:
        mc.download("org/x")
    assert TOKEN not in str(err.value)


@pytest.mark.parametrize("bad_path", ["../escape.txt", "/etc/passwd", "a/../../b", "a\\b"])
def test_malicious_tree_paths_are_refused(tmp_path: Path, bad_path: str) -> None:
    repo = make_repo()
    with fault_server(repo) as srv:
        srv.tree_override = [{"type": "file", "path": bad_path, "size": 5, "oid": "a" * 40}]
        with cache_for(tmp_path, srv.url) as mc, pytest.raises(ProtocolError):
            mc.download(repo.repo_id)
    assert not (tmp_path / "escape.txt").exists()
    assert not any(p.name == "escape.txt" for p in tmp_path.rglob("*"))


def test_wrong_declared_size_is_rejected(tmp_path: Path) -> None:
    repo = make_repo()
    with fault_server(repo) as srv:
        tree = repo.tree()
        for item in tree:
            if item["path"] == "config.json":
                item["size"] += 10
        srv.tree_override = tree
        with cache_for(tmp_path, srv.url, retries=1) as mc, pytest.raises((TransientError, IntegrityError)):
            mc.download(repo.repo_id)
        assert "config.json" not in snapshot_files(mc, repo)


@pytest.mark.parametrize("raw_http", [True, False], ids=["socket", "httpx"])
def test_cross_origin_redirect_drops_token(tmp_path: Path, raw_http: bool) -> None:
    repo = make_repo()
    with fault_server(repo) as hub, fault_server(repo) as cdn:
        hub.redirect_to = cdn.url
        with cache_for(tmp_path, hub.url, raw_http=raw_http) as mc:
            mc.download(repo.repo_id)
        assert_snapshot_matches(mc, repo)
        assert any(e.path.endswith("model.safetensors") for e in cdn.log)
        assert all(e.authorization is None for e in cdn.log)
        assert all(e.authorization == f"Bearer {TOKEN}" for e in hub.log)


def test_second_download_fetches_nothing(tmp_path: Path) -> None:
    repo = make_repo()
    with fault_server(repo) as srv, cache_for(tmp_path, srv.url) as mc:
        first = mc.download(repo.repo_id)
        served = srv.bytes_served()
        second = mc.download(repo.repo_id)
        assert first.bytes_fetched == sum(len(d) for d in repo.files.values())
        assert second.bytes_fetched == 0 and second.files_fetched == 0
        assert srv.bytes_served() == served


def test_tokenizer_profile_then_full(tmp_path: Path) -> None:
    repo = make_repo()
    with fault_server(repo) as srv, cache_for(tmp_path, srv.url) as mc:
        tok = mc.download(repo.repo_id, profile="tokenizer")
        assert tok.files == 2
        assert mc.check(repo.repo_id, profile="tokenizer").ready
        full_check = mc.check(repo.repo_id, profile="full")
        assert not full_check.ready and "model.safetensors" in full_check.missing
        assert srv.bytes_served("model.safetensors") == 0
        full = mc.download(repo.repo_id)
        assert full.files_fetched == 2
        assert_snapshot_matches(mc, repo)


def test_include_exclude(tmp_path: Path) -> None:
    repo = make_repo()
    with fault_server(repo) as srv, cache_for(tmp_path, srv.url) as mc:
        res = mc.download(repo.repo_id, include=["*.json", "nested/"], exclude=["tokenizer*"])
        assert res.files == 2
        assert set(snapshot_files(mc, repo)) == {"config.json", "nested/extra.txt"}


def test_partial_left_by_a_killed_run_is_resumed(tmp_path: Path) -> None:
    repo = make_repo(1_000_000)
    with fault_server(repo) as srv, cache_for(tmp_path, srv.url) as mc:
        layout = mc.layout(repo.repo_id)
        layout.blobs.mkdir(parents=True)
        sha = hashlib.sha256(repo.files["model.safetensors"]).hexdigest()
        layout.partial(sha).write_bytes(repo.files["model.safetensors"][:700_000])
        state_path_for(layout.partial(sha)).write_text(json.dumps({"etag": sha, "size": 1_000_000, "done": [[0, 700_000]]}))
        res = mc.download(repo.repo_id)
        assert res.bytes_resumed == 700_000
        assert srv.bytes_served("model.safetensors") == 300_000
        assert_snapshot_matches(mc, repo)


def test_garbage_partial_is_detected_and_refetched(tmp_path: Path) -> None:
    repo = make_repo(400_000)
    with fault_server(repo) as srv, cache_for(tmp_path, srv.url) as mc:
        layout = mc.layout(repo.repo_id)
        layout.blobs.mkdir(parents=True)
        sha = hashlib.sha256(repo.files["model.safetensors"]).hexdigest()
        layout.partial(sha).write_bytes(os.urandom(100_000))
        state_path_for(layout.partial(sha)).write_text(json.dumps({"etag": sha, "size": 400_000, "done": [[0, 100_000]]}))
        mc.download(repo.repo_id)
        assert_snapshot_matches(mc, repo)


def test_big_file_is_fetched_by_several_connections(tmp_path: Path) -> None:
    repo = make_repo(2_000_000)
    with fault_server(repo, delay=0.002) as srv:
        with cache_for(tmp_path, srv.url, chunk_size=256 * 1024, connections=4) as mc:
            res = mc.download(repo.repo_id)
        gets = [e for e in srv.log if e.path.endswith("model.safetensors") and e.method == "GET"]
        assert len(gets) == 8 and all(e.status == 206 for e in gets)
        assert sorted(e.range for e in gets)[0] == "bytes=0-262143"
        assert res.bytes_fetched == sum(len(d) for d in repo.files.values())
        assert srv.bytes_served("model.safetensors") == 2_000_000
    assert_snapshot_matches(mc, repo)


def test_chunked_resume_uses_recorded_ranges(tmp_path: Path) -> None:
    """Ranges recorded by an earlier run (out of order, with holes) are kept; only holes are fetched."""
    repo = make_repo(1_000_000)
    data = repo.files["model.safetensors"]
    with fault_server(repo) as srv, cache_for(tmp_path, srv.url, chunk_size=100_000) as mc:
        layout = mc.layout(repo.repo_id)
        layout.blobs.mkdir(parents=True)
        sha = hashlib.sha256(data).hexdigest()
        partial = layout.partial(sha)
        with open(partial, "wb") as fh:
            for a, b in ((0, 150_000), (400_000, 700_000)):
                fh.seek(a)
                fh.write(data[a:b])
        state_path_for(partial).write_text(json.dumps({"etag": sha, "size": 1_000_000,
                                                       "done": [[0, 150_000], [400_000, 700_000]]}))
        res = mc.download(repo.repo_id)
        assert res.bytes_resumed == 450_000
        assert srv.bytes_served("model.safetensors") == 550_000
        assert not state_path_for(partial).exists() and not partial.exists()
        assert_snapshot_matches(mc, repo)


@pytest.mark.parametrize("raw_http", [True, False], ids=["socket", "httpx"])
def test_stalled_stream_is_retried(tmp_path: Path, raw_http: bool) -> None:
    repo = make_repo(1_000_000)
    with fault_server(repo) as srv:
        srv.faults["model.safetensors"] = Faults(stall=1, stall_seconds=3)
        with cache_for(tmp_path, srv.url, timeout=0.5, raw_http=raw_http) as mc:
            res = mc.download(repo.repo_id)
        # (the stalled request is still asleep on the server side, so only the retry is logged)
        retry = [e for e in srv.log if e.path.endswith("model.safetensors") and e.method == "GET"][0]
        assert retry.range is not None and not retry.range.startswith("bytes=0-")  # resumed where it stalled
        assert res.bytes_fetched == 1_000_000 + sum(len(d) for p, d in repo.files.items() if p != "model.safetensors")
    assert_snapshot_matches(mc, repo)


@pytest.mark.parametrize("small", [0, SMALL], ids=["resumable", "in-memory"])
@pytest.mark.parametrize("status,exc", [(401, "AuthError"), (403, "AuthError")])
def test_auth_failures_are_not_retried(tmp_path: Path, status: int, exc: str, small: int) -> None:
    from modelcache import errors

    repo = make_repo()
    with fault_server(repo) as srv:
        srv.faults["model.safetensors"] = Faults(statuses=[status] * 10)
        with cache_for(tmp_path, srv.url, small_file_bytes=small) as mc, pytest.raises(getattr(errors, exc)) as err:
            mc.download(repo.repo_id)
        assert sum(1 for e in srv.log if e.path.endswith("model.safetensors")) == 1
        assert TOKEN not in str(err.value)


def test_unreachable_endpoint_falls_back_to_the_cache(tmp_path: Path) -> None:
    repo = make_repo()
    with fault_server(repo) as srv, cache_for(tmp_path, srv.url) as mc:
        mc.download(repo.repo_id)
        url = srv.url
    with cache_for(tmp_path, url) as mc:  # the server is gone now
        res = mc.download(repo.repo_id)
        assert res.commit == repo.commit and res.bytes_fetched == 0
        assert res.note and "unreachable" in res.note
        with pytest.raises(EndpointUnreachable):
            mc.download("org/never-cached")
