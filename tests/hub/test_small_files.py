"""Small files (``Settings.small_file_bytes``) are fetched whole into memory, verified there and
written as their blob through a private temp: no partial, no resume state, no lock. What must
still hold: nothing unverified is ever visible, nothing is written through a planted link, a
killed run leaves nothing `gc` does not remove, and two processes racing for the same blob both
end with the same verified bytes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers.fault_server import Faults, Repo, fault_server

from modelcache.errors import IntegrityError, ModelCacheError
from modelcache.hashing import git_blob_sha1
from modelcache.service.model_cache import ModelCache
from modelcache.settings import Settings
from modelcache.tokens import TokenSource


def _repo(n: int = 20, size: int = 50_000, repo_id: str = "org/small") -> Repo:
    return Repo(repo_id, {f"part-{i:03d}.txt": os.urandom(size) for i in range(n)}, lfs=set())


def _mc(tmp_path: Path, url: str, **kw: object) -> ModelCache:
    return ModelCache(Settings(cache_dir=tmp_path / "cache", endpoint=url, token=TokenSource(), retry_base=0.01,
                               retry_cap=0.1, **kw))  # type: ignore[arg-type]


def _snapshot(mc: ModelCache, repo: Repo) -> dict[str, bytes]:
    snap = mc.layout(repo.repo_id).snapshot(repo.commit)
    return {p: (snap / p).read_bytes() for p in repo.files if (snap / p).exists()}


def _leftovers(mc: ModelCache, repo: Repo) -> list[str]:
    blobs = mc.layout(repo.repo_id).blobs
    return sorted(p.name for p in blobs.iterdir() if "." in p.name)


def test_small_files_take_the_in_memory_path_and_leave_nothing_behind(tmp_path: Path) -> None:
    repo = _repo()
    with fault_server(repo, nodelay=True) as srv:
        mc = _mc(tmp_path, srv.url)
        mc.download(repo.repo_id)
        gets = [e for e in srv.log if e.method == "GET" and "/resolve/" in e.path]
    assert _snapshot(mc, repo) == repo.files
    assert _leftovers(mc, repo) == []  # no partial, no state, no temp
    assert all(e.range is None for e in gets) and len(gets) == len(repo.files)  # one whole GET per file
    locks = mc.layout(repo.repo_id).locks
    assert not [p for p in locks.glob("*.mc-lock") if p.name != "repo.mc-lock"]
    for p, data in repo.files.items():  # each blob is named by its content
        assert (mc.layout(repo.repo_id).blobs / git_blob_sha1(data)).read_bytes() == data


def test_threshold_chooses_the_path(tmp_path: Path) -> None:
    """Above ``small_file_bytes`` a file takes the resumable path (ranged, with a partial)."""
    repo = Repo("org/mixed", {"small.txt": os.urandom(1000), "big.bin": os.urandom(300_000)}, lfs={"big.bin"})
    with fault_server(repo, nodelay=True) as srv:
        mc = _mc(tmp_path, srv.url, small_file_bytes=100_000, chunk_size=64 * 1024, connections=2)
        mc.download(repo.repo_id)
        ranged = {e.path.rsplit("/", 1)[-1] for e in srv.log if e.range}
    assert ranged == {"big.bin"}
    assert _snapshot(mc, repo) == repo.files


def test_corrupt_small_file_is_never_installed(tmp_path: Path) -> None:
    repo = _repo(3)
    victim = "part-001.txt"
    with fault_server(repo, nodelay=True) as srv:
        srv.faults[victim] = Faults(corrupt=100)
        mc = _mc(tmp_path, srv.url)
        with pytest.raises(IntegrityError):
            mc.download(repo.repo_id)
    blobs = mc.layout(repo.repo_id).blobs
    assert not (blobs / git_blob_sha1(repo.files[victim])).exists()
    assert victim not in _snapshot(mc, repo)
    assert not [n for n in _leftovers(mc, repo) if n.startswith(git_blob_sha1(repo.files[victim]))]


def test_planted_link_at_the_blob_name_is_replaced_not_written_through(tmp_path: Path) -> None:
    repo = _repo(2)
    target = tmp_path / "outside.txt"
    target.write_bytes(b"keep me")
    with fault_server(repo, nodelay=True) as srv:
        mc = _mc(tmp_path, srv.url)
        layout = mc.layout(repo.repo_id)
        layout.blobs.mkdir(parents=True)
        etag = git_blob_sha1(repo.files["part-000.txt"])
        os.symlink(target, layout.blobs / etag)  # a co-tenant's link where the blob will go
        mc.download(repo.repo_id)
    assert target.read_bytes() == b"keep me"
    blob = layout.blobs / etag
    assert not blob.is_symlink() and blob.read_bytes() == repo.files["part-000.txt"]
    assert _snapshot(mc, repo) == repo.files


def test_blobs_swapped_for_a_link_before_install_gets_nothing_written_outside(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The run holds ``blobs/`` by fd: a co-tenant who swaps it for a link just before a small
    file is written gets nothing written through the link."""
    from modelcache.service import ensure

    repo = _repo(3)
    outside = tmp_path / "outside"
    outside.mkdir()
    real = ensure.install_blobs_bytes
    swapped: list[bool] = []

    def racing(layout, items, folders=None):  # type: ignore[no-untyped-def]
        if not swapped:
            os.rename(layout.blobs, layout.blobs.with_name("blobs.moved"))
            os.symlink(outside, layout.blobs)
            swapped.append(True)
        return real(layout, items, folders)

    monkeypatch.setattr(ensure, "install_blobs_bytes", racing)
    with fault_server(repo, nodelay=True) as srv:
        mc = _mc(tmp_path, srv.url, retries=1)
        try:
            mc.download(repo.repo_id)
        except ModelCacheError:
            pass  # refusing is fine; writing outside is not
    assert swapped and list(outside.iterdir()) == []


def _spawn(cache: Path, url: str, repo_id: str) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "MODELCACHE_"))}
    return subprocess.Popen([sys.executable, "-m", "modelcache", "--cache-dir", str(cache), "--endpoint", url,
                             "download", repo_id, "--quiet"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_processes_racing_for_the_same_small_blobs_all_end_verified(tmp_path: Path) -> None:
    """No lock: each may fetch a blob; the later rename puts the same verified bytes in place."""
    repo = _repo(30, 20_000, "org/race")
    cache = tmp_path / "cache"
    with fault_server(repo, nodelay=True) as srv:
        procs = [_spawn(cache, srv.url, repo.repo_id) for _ in range(4)]
        for p in procs:
            _, err = p.communicate(timeout=120)
            assert p.returncode == 0, err.decode()
    mc = ModelCache(Settings(cache_dir=cache, offline=True))
    assert _snapshot(mc, repo) == repo.files
    assert _leftovers(mc, repo) == []
    (report,) = mc.verify(repo.repo_id)
    assert report.ok


def test_killed_run_leaves_only_temps_gc_removes(tmp_path: Path) -> None:
    """SIGKILL at random points of a slow download of small files: never a wrong blob, never a
    file visible half-way; the next download completes; `gc` removes what the kills left."""
    repo = _repo(40, 60_000, "org/killsmall")
    cache = tmp_path / "cache"
    with fault_server(repo, chunk=8 * 1024, delay=0.01, nodelay=True) as srv:  # ~0.1 s a file
        for delay in (0.35, 0.45, 0.55, 0.7):  # python start-up is ~0.3 s: kill during the transfer
            p = _spawn(cache, srv.url, repo.repo_id)
            time.sleep(delay)
            p.send_signal(signal.SIGKILL)
            p.wait()
            mc = ModelCache(Settings(cache_dir=cache, offline=True))
            blobs = mc.layout(repo.repo_id).blobs
            if blobs.exists():
                for b in blobs.iterdir():
                    if "." not in b.name:  # every installed blob is whole and verified
                        assert git_blob_sha1(b.read_bytes()) == b.name
        p = _spawn(cache, srv.url, repo.repo_id)
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err.decode()
    mc = ModelCache(Settings(cache_dir=cache, offline=True))
    assert _snapshot(mc, repo) == repo.files
    mc.gc(partial_max_age=0)
    assert _leftovers(mc, repo) == []


def test_a_batch_that_fails_leaves_no_temp_and_nothing_unverified(tmp_path: Path) -> None:
    """Small files are written in batches (temps, then syncs, then renames): a folder planted at
    one blob's name fails the batch — every temp of it is removed, no blob is half there."""
    repo = _repo(12, 20_000, "org/batchfail")
    victim = git_blob_sha1(repo.files["part-005.txt"])
    with fault_server(repo, nodelay=True) as srv:
        mc = _mc(tmp_path, srv.url, retries=0)
        layout = mc.layout(repo.repo_id)
        (layout.blobs / victim).mkdir(parents=True)
        with pytest.raises(ModelCacheError):
            mc.download(repo.repo_id)
    assert not [n for n in _leftovers(mc, repo) if n.endswith(".incomplete")]
    for b in layout.blobs.iterdir():
        if b.is_file():
            assert git_blob_sha1(b.read_bytes()) == b.name  # whatever is installed is whole and verified
