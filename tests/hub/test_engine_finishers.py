"""The transfer engine's finisher threads (sync, install, publish) and small-file path, attacked:
a disk that stalls, callbacks that raise, a run that must neither hang nor lose an error.

Real upstream (``fault_server`` on loopback), real engine; only the install/publish callbacks
are the test's, as they are the service layer's in production."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest
from helpers.fault_server import Repo, fault_server

from modelcache.cache.layout import RepoLayout
from modelcache.cache.publish import ensure_repo_dirs, install_blob_bytes, install_blob_fd
from modelcache.errors import CacheError
from modelcache.hub.client import HubClient
from modelcache.hub.download.engine import SMALL_FANOUT, FileJob, TransferEngine
from modelcache.protocol import FileEntry

FILE = 64 * 1024


def _repo(n: int, size: int = FILE, lfs: bool = False) -> Repo:
    files = {f"f{i:03d}.bin": os.urandom(size) for i in range(n)}
    return Repo("org/finishers", files, lfs=set(files) if lfs else set())


def _entries(repo: Repo) -> list[FileEntry]:
    return [FileEntry.from_tree_item(i) for i in repo.tree()]


def _settled(read: callable, limit: float = 20.0) -> int:  # type: ignore[valid-type]
    """The value ``read()`` settles at (unchanged for 0.5 s; at most ``limit`` s of waiting)."""
    last, since, deadline = read(), time.monotonic(), time.monotonic() + limit
    while time.monotonic() < deadline:
        time.sleep(0.05)
        now = read()
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= 0.5:
            break
    return last


def test_a_stalled_disk_bounds_the_small_files_held_in_memory(tmp_path: Path) -> None:
    """Verified small files wait in memory for a finisher: while the disk stalls, connections must
    stop fetching (at most ``connections`` files fetching plus ``connections`` waiting), not pull
    the whole repo into memory."""
    connections = 4
    repo = _repo(120)
    gate = threading.Event()
    installed: list[str] = []

    def install_bytes(entry: FileEntry, data: bytes) -> None:
        gate.wait(60)  # an NFS fsync that takes its time
        installed.append(entry.path)

    with fault_server(repo, nodelay=True) as srv:
        client = HubClient(srv.url)
        jobs = [FileJob(e, client.file_url("model", repo.repo_id, repo.commit, e.path), None, lambda e: None,
                        install_bytes=install_bytes) for e in _entries(repo)]
        engine = TransferEngine(client, connections=connections)
        errors: list[BaseException] = []

        def run() -> None:
            try:
                engine.run(jobs)
            except BaseException as exc:  # noqa: BLE001
                errors.append(exc)

        t = threading.Thread(target=run)
        t.start()
        try:
            held = _settled(lambda: engine.stats.bytes_fetched // FILE)
        finally:
            gate.set()
            t.join(60)
    assert not t.is_alive() and not errors, errors
    # the backlog (``connections`` verified files waiting for a finisher) plus one file in flight
    # per worker (small files: up to SMALL_FANOUT x connections workers)
    bound = connections + SMALL_FANOUT * connections
    assert held <= bound, f"{held} files fetched into memory while the disk stalled"
    assert sorted(installed) == sorted(repo.files)  # and once it moves, every file is written


@pytest.mark.parametrize("where", ["install_bytes", "on_verified"])
def test_an_error_in_a_small_file_finisher_is_raised_by_run(tmp_path: Path, where: str) -> None:
    repo = _repo(30)
    layout = RepoLayout(tmp_path / "cache", "model", repo.repo_id)
    ensure_repo_dirs(layout)
    victim = sorted(repo.files)[7]

    def install_bytes(entry: FileEntry, data: bytes) -> None:
        if where == "install_bytes" and entry.path == victim:
            raise CacheError("disk says no", "free some")
        install_blob_bytes(layout, entry.etag, data)

    def on_verified(entry: FileEntry) -> None:
        if where == "on_verified" and entry.path == victim:
            raise CacheError("link says no", "fix it")

    before = set(threading.enumerate())
    with fault_server(repo, nodelay=True) as srv:
        client = HubClient(srv.url)
        jobs = [FileJob(e, client.file_url("model", repo.repo_id, repo.commit, e.path), None, on_verified,
                        install_bytes=install_bytes) for e in _entries(repo)]
        with pytest.raises(CacheError, match="says no"):
            TransferEngine(client, connections=4).run(jobs)
        left = [t for t in set(threading.enumerate()) - before if t.name.startswith(("mc-finish", "mc-conn", "mc-small"))]
    assert not left  # no finisher or connection thread of this run left behind


@pytest.mark.parametrize("where", ["install", "on_verified"])
def test_an_error_in_a_big_file_finisher_is_raised_and_no_fd_is_closed_under_it(tmp_path: Path, where: str) -> None:
    """The finisher of a big file uses the assembly's fd; ``run()`` closes assemblies only after
    every finisher is done, and raises the finisher's error."""
    repo = _repo(6, 300_000, lfs=True)
    layout = RepoLayout(tmp_path / "cache", "model", repo.repo_id)
    ensure_repo_dirs(layout)
    victim = sorted(repo.files)[2]
    slow_ok: list[bool] = []

    def install(entry: FileEntry, fd: int, private: Path) -> Path | None:
        if entry.path != victim:
            time.sleep(0.3)  # other finishers still at work when the error lands
            os.fstat(fd)  # (EBADF if run() closed it under us)
            slow_ok.append(True)
        elif where == "install":
            raise CacheError("install says no", "fix it")
        return install_blob_fd(layout, entry.etag, fd, private)

    def on_verified(entry: FileEntry) -> None:
        if where == "on_verified" and entry.path == victim:
            raise CacheError("publish says no", "fix it")

    with fault_server(repo, nodelay=True) as srv:
        client = HubClient(srv.url)
        jobs = [FileJob(e, client.file_url("model", repo.repo_id, repo.commit, e.path), layout.partial(e.etag),
                        on_verified, install=install) for e in _entries(repo)]
        with pytest.raises(CacheError, match="says no"):
            TransferEngine(client, connections=4, chunk_size=64 * 1024).run(jobs)
    assert slow_ok  # the slow finishers ran to their end with their fds open
    for e in _entries(repo):  # whatever was installed is whole and verified
        blob = layout.blob(e.etag)
        if blob.exists():
            assert blob.read_bytes() == repo.files[e.path]


def test_an_error_while_dropping_a_lost_file_fails_the_run_never_hangs(tmp_path: Path) -> None:
    """A finisher finds the blob's lock taken over (another process finishes the file) and, as it
    drops its own copy, the disk refuses the unlink (read-only remount, NFS trouble; here the
    folder is made immutable): that error must end ``run()``, not vanish in the thread pool
    and leave it waiting forever. (Needs root, for ``chattr +i``.)"""
    import subprocess

    repo = _repo(1, 300_000, lfs=True)
    (entry,) = _entries(repo)
    layout = RepoLayout(tmp_path / "cache", "model", repo.repo_id)
    ensure_repo_dirs(layout)
    probe = layout.blobs / "probe"
    probe.mkdir()
    if os.geteuid() != 0 or subprocess.run(["chattr", "+i", str(probe)], capture_output=True).returncode:
        pytest.skip("needs root and chattr to make a folder refuse unlinks")
    subprocess.run(["chattr", "-i", str(probe)], check=True)
    probe.rmdir()
    state = {"fetched": 0}

    def on_bytes(path: str, n: int) -> None:
        state["fetched"] += n

    def fence() -> bool:
        if state["fetched"] < entry.size:
            return True  # still ours while the bytes come in
        subprocess.run(["chattr", "+i", str(layout.blobs)], check=True)
        return False  # then taken over, and the disk refuses to drop our copy

    try:
        with fault_server(repo, nodelay=True) as srv:
            client = HubClient(srv.url)
            job = FileJob(entry, client.file_url("model", repo.repo_id, repo.commit, entry.path),
                          layout.partial(entry.etag), lambda e: None, fence=fence,
                          install=lambda e, fd, private: install_blob_fd(layout, e.etag, fd, private))
            engine = TransferEngine(client, connections=1, on_bytes=on_bytes,
                                    checkpoint_bytes=1 << 30, checkpoint_interval=3600.0)
            outcome: list[BaseException | str] = []

            def run() -> None:
                try:
                    engine.run([job])
                    outcome.append("returned")
                except BaseException as exc:  # noqa: BLE001
                    outcome.append(exc)

            t = threading.Thread(target=run, daemon=True)
            t.start()
            t.join(30)
        assert not t.is_alive(), "run() hangs: the finisher's error was lost in the pool"
        (result,) = outcome
        assert isinstance(result, PermissionError), result  # surfaced
    finally:
        subprocess.run(["chattr", "-i", str(layout.blobs)], capture_output=True)
