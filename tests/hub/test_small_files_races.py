"""The small-file path against what runs beside it on a shared volume: another writer of the
same blob, and ``gc``'s sweep of leftover temps (a blob's temps are garbage once the blob is
there, and a small file's temp has no lock to say it is in use)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from helpers.fault_server import Repo, fault_server

from modelcache.cache import gc, publish
from modelcache.errors import ModelCacheError
from modelcache.hashing import git_blob_sha1
from modelcache.service.model_cache import ModelCache
from modelcache.settings import Settings
from modelcache.tokens import TokenSource


def test_another_writer_and_a_gc_sweep_during_the_install_do_not_fail_the_download(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Between our temp's creation and its rename, another process installs the same blob and a
    concurrent ``gc`` sweeps our temp (the blob is there, no lock protects it): the blob we
    meant to install is in place, verified — the download must not fail over it."""
    data = os.urandom(50_000)
    repo = Repo("org/smallrace", {"a.txt": data}, lfs=set())
    cache = tmp_path / "cache"
    real_fsync = os.fsync
    raced: list[str] = []

    def racing(fd: int) -> None:  # our temp is written: now the race
        real_fsync(fd)
        try:
            path = Path(os.readlink(f"/proc/self/fd/{fd}"))
        except OSError:
            return
        if path.name.endswith(".small.incomplete") and not raced:
            blob = path.parent / path.name.split(".", 1)[0]
            blob.write_bytes(data)  # the other process's rename landed first
            gc.sweep(cache)  # and gc removes the temps of a blob that is there
            raced.append(path.name)

    monkeypatch.setattr(publish.os, "fsync", racing)
    with fault_server(repo, nodelay=True) as srv:
        mc = ModelCache(Settings(cache_dir=cache, endpoint=srv.url, token=TokenSource(), retries=0))
        mc.download(repo.repo_id)
    assert raced  # the race was run
    layout = mc.layout(repo.repo_id)
    assert not (layout.blobs / raced[0]).exists()  # gc did sweep our temp
    assert (layout.snapshot(repo.commit) / "a.txt").read_bytes() == data
    assert git_blob_sha1((layout.blobs / git_blob_sha1(data)).read_bytes()) == git_blob_sha1(data)


@pytest.mark.parametrize("kind", ["short", "long", "fifo", "dangling-link", "socket", "hard-link-outside", "folder"])
def test_junk_at_the_blob_name_is_replaced_or_refused_never_used(tmp_path: Path, kind: str,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """A co-tenant's junk where a small blob goes: a wrong-size file, a FIFO, a socket, a dangling
    link or a hard link to a file outside is replaced by the verified bytes (the outside file
    untouched); a folder is refused with an error. Never is the junk linked as the file."""
    import socket

    data = os.urandom(50_000)
    repo = Repo("org/junkblob", {"a.txt": data}, lfs=set())
    cache = tmp_path / "cache"
    outside = tmp_path / "outside.txt"
    outside.write_bytes(b"keep me")
    blobs = cache / "models--org--junkblob" / "blobs"
    blobs.mkdir(parents=True)
    blob = blobs / git_blob_sha1(data)
    held = None
    if kind in ("short", "long"):
        blob.write_bytes(data[:100] if kind == "short" else data + b"!")
    elif kind == "fifo":
        os.mkfifo(blob)
    elif kind == "dangling-link":
        os.symlink(tmp_path / "nowhere", blob)
    elif kind == "socket":
        held = socket.socket(socket.AF_UNIX)
        monkeypatch.chdir(blobs)  # (a socket's path is limited to ~108 bytes)
        held.bind(blob.name)
    elif kind == "hard-link-outside":
        os.link(outside, blob)
    else:
        blob.mkdir()
    try:
        with fault_server(repo, nodelay=True) as srv:
            mc = ModelCache(Settings(cache_dir=cache, endpoint=srv.url, token=TokenSource(), retries=0))
            if kind == "folder":
                with pytest.raises(ModelCacheError):
                    mc.download(repo.repo_id)
            else:
                mc.download(repo.repo_id)
    finally:
        if held is not None:
            held.close()
    assert outside.read_bytes() == b"keep me"
    link = mc.layout(repo.repo_id).snapshot(repo.commit) / "a.txt"
    if kind == "folder":
        assert not os.path.isfile(link)
    else:
        assert link.read_bytes() == data and not blob.is_symlink() and blob.stat().st_nlink == 1


def test_a_leftover_partial_that_cannot_be_removed_does_not_fail_a_small_download(tmp_path: Path) -> None:
    """An older run (or one with ``small_file_bytes=0``) left ``<etag>.mc.incomplete`` for a file
    that is now small, owned by another tenant in a sticky folder: our unlink of that garbage is
    refused. The blob is installed all the same; the download must not fail over the cleanup.
    (Root: the refusal is made with ``chattr +i``; skipped where that is not possible.)"""
    import subprocess

    data = os.urandom(50_000)
    repo = Repo("org/stuckpartial", {"a.txt": data}, lfs=set())
    cache = tmp_path / "cache"
    blobs = cache / "models--org--stuckpartial" / "blobs"
    blobs.mkdir(parents=True)
    partial = blobs / f"{git_blob_sha1(data)}.mc.incomplete"
    partial.write_bytes(data[:1000])
    if os.geteuid() != 0 or subprocess.run(["chattr", "+i", str(partial)], capture_output=True).returncode:
        pytest.skip("needs root and chattr to make an unlink fail")
    try:
        with fault_server(repo, nodelay=True) as srv:
            mc = ModelCache(Settings(cache_dir=cache, endpoint=srv.url, token=TokenSource(), retries=0))
            mc.download(repo.repo_id)
    finally:
        subprocess.run(["chattr", "-i", str(partial)], capture_output=True)
    assert (mc.layout(repo.repo_id).snapshot(repo.commit) / "a.txt").read_bytes() == data


def test_an_older_runs_partial_and_state_for_a_now_small_file_are_removed(tmp_path: Path) -> None:
    """A run killed with ``small_file_bytes=0`` left ``<etag>.mc.incomplete`` and its resume state;
    the next run takes the file on the small path (one listing of ``blobs/`` finds them): once the
    blob is installed both are gone, and another blob's partial is left alone."""
    data = os.urandom(50_000)
    repo = Repo("org/oldpartial", {"a.txt": data}, lfs=set())
    cache = tmp_path / "cache"
    blobs = cache / "models--org--oldpartial" / "blobs"
    blobs.mkdir(parents=True)
    etag = git_blob_sha1(data)
    (blobs / f"{etag}.mc.incomplete").write_bytes(data[:1000])
    (blobs / f"{etag}.mc.state").write_text("{}")
    other = blobs / f"{'0' * 40}.mc.incomplete"
    other.write_bytes(b"another file's partial")
    with fault_server(repo, nodelay=True) as srv:
        mc = ModelCache(Settings(cache_dir=cache, endpoint=srv.url, token=TokenSource(), retries=0))
        mc.download(repo.repo_id)
    assert (mc.layout(repo.repo_id).snapshot(repo.commit) / "a.txt").read_bytes() == data
    assert sorted(p.name for p in blobs.iterdir()) == sorted([etag, other.name])
