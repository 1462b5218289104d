"""The small-file path against what runs beside it on a shared volume: another writer of the
same blob, and ``gc``'s sweep of leftover temps (a blob's temps are garbage once the blob is
there, and a small file's temp has no lock to say it is in use)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from helpers.fault_server import Repo, fault_server

from modelcache.cache import gc, publish
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
    real = publish.create_exclusive
    raced: list[str] = []

    def racing(folder: Path, prefix: str, suffix: str = ".tmp", mode: int = 0o600):  # type: ignore[no-untyped-def]
        fd, tmp = real(folder, prefix, suffix, mode)
        if suffix == ".small.incomplete" and not raced:
            blob = folder / prefix.rstrip(".")
            blob.write_bytes(data)  # the other process's rename landed first
            gc.sweep(cache)  # and gc removes the temps of a blob that is there
            raced.append(tmp.name)
        return fd, tmp

    monkeypatch.setattr(publish, "create_exclusive", racing)
    with fault_server(repo, nodelay=True) as srv:
        mc = ModelCache(Settings(cache_dir=cache, endpoint=srv.url, token=TokenSource(), retries=0))
        mc.download(repo.repo_id)
    assert raced  # the race was run
    layout = mc.layout(repo.repo_id)
    assert not (layout.blobs / raced[0]).exists()  # gc did sweep our temp
    assert (layout.snapshot(repo.commit) / "a.txt").read_bytes() == data
    assert git_blob_sha1((layout.blobs / git_blob_sha1(data)).read_bytes()) == git_blob_sha1(data)
