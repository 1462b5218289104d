"""Downloaded bytes start going to disk while the download runs (``sync_file_range``), so the fsync
before publishing finds little left; a system without the call downloads exactly as before."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from helpers.fault_server import Faults, Repo, fault_server
from helpers.repos import assert_snapshot_is

from modelcache import ModelCache, Settings, TokenSource
from modelcache.hub.download import writeback
from modelcache.hub.download.ranges import add_range

MiB = 1 << 20
linux = pytest.mark.skipif(not os.uname().sysname == "Linux", reason="sync_file_range is Linux's")


@pytest.fixture
def fresh_switch(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test looks the call up anew (a test that switches it off does not leak)."""
    monkeypatch.setattr(writeback, "_call", None)


@linux
def test_a_regular_file_is_written_back(tmp_path: Path, fresh_switch: None) -> None:
    path = tmp_path / "f"
    path.write_bytes(os.urandom(3 * MiB))
    fd = os.open(path, os.O_RDWR)
    try:
        assert writeback.start_writeback(fd, 0, 3 * MiB) is True
        assert writeback.start_writeback(fd, 0, 0) is False  # nothing to do
        os.fsync(fd)
    finally:
        os.close(fd)


@linux
def test_a_refused_call_switches_it_off_and_nothing_breaks(tmp_path: Path, fresh_switch: None) -> None:
    r, w = os.pipe()  # sync_file_range on a pipe: ESPIPE
    try:
        assert writeback.start_writeback(r, 0, 4096) is False
    finally:
        os.close(r)
        os.close(w)
    path = tmp_path / "f"
    path.write_bytes(b"x" * 8192)
    fd = os.open(path, os.O_RDWR)
    try:
        assert writeback.start_writeback(fd, 0, 8192) is False  # off for the process now
    finally:
        os.close(fd)


@linux
def test_a_failure_of_one_file_does_not_switch_it_off(tmp_path: Path, fresh_switch: None) -> None:
    """A closed descriptor (EBADF) is that call's problem: the next file is still written back."""
    path = tmp_path / "f"
    path.write_bytes(b"x" * 8192)
    fd = os.open(path, os.O_RDWR)
    os.close(fd)
    assert writeback.start_writeback(fd, 0, 8192) is False
    fd = os.open(path, os.O_RDWR)
    try:
        assert writeback.start_writeback(fd, 0, 8192) is True
    finally:
        os.close(fd)


def test_the_cursor_asks_for_every_byte_once_in_steps(monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[tuple[int, int]] = []
    monkeypatch.setattr(writeback, "start_writeback", lambda fd, off, n: asked.append((off, off + n)) or True)
    cur = writeback.Writeback(7, 100, step=1000)
    for pos in range(100, 5101, 300):  # a stream from byte 100 in 300-byte pieces
        cur.wrote(pos)
    cur.flush(5150)
    assert all(b - a >= 1000 for a, b in asked[:-1])
    covered: list[tuple[int, int]] = []
    for r in asked:
        covered = add_range(covered, r)
    assert covered == [(100, 5150)] and sum(b - a for a, b in asked) == 5050


def _repo(size: int) -> Repo:
    data = hashlib.sha256(b"wb").digest() * (size // 32 + 1)
    return Repo("org/wb", {"config.json": b'{"model_type": "llama"}', "tokenizer.json": b'{"model": {}}',
                            "model.safetensors": data[:size]})


def _cache(tmp_path: Path, url: str) -> ModelCache:
    return ModelCache(Settings(cache_dir=tmp_path / "cache", endpoint=url, token=TokenSource(value=None, origin="test"),
                               chunk_size=4 * MiB, connections=4, retry_base=0.01, retry_cap=0.2))


@pytest.mark.parametrize("faults", [Faults(), Faults(ignore_range=True), Faults(truncate=2)],
                         ids=["ranges", "no-ranges", "cut-streams"])
def test_a_download_writes_back_each_byte_it_keeps(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   faults: Faults, fresh_switch: None) -> None:
    """Every byte of the big file was handed to the kernel's writeback (with ranges, without them,
    with streams cut and resumed), and the file is published whole and verified."""
    size = 20 * MiB + 12345
    asked: list[tuple[int, int]] = []
    real = writeback.start_writeback

    def spy(fd: int, off: int, n: int) -> bool:
        asked.append((off, off + n))
        return real(fd, off, n)

    monkeypatch.setattr(writeback, "start_writeback", spy)
    repo = _repo(size)
    with fault_server(repo) as fs:
        fs.faults["model.safetensors"] = faults
        with _cache(tmp_path, fs.url) as mc:
            mc.download(repo.repo_id)
    assert_snapshot_is(tmp_path / "cache", repo)
    covered: list[tuple[int, int]] = []
    for r in asked:
        covered = add_range(covered, r)
    assert covered == [(0, size)]


def test_without_the_call_a_download_is_unchanged(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(writeback, "_call", False)  # not Linux, or a seccomp profile that refuses it
    repo = _repo(9 * MiB)
    with fault_server(repo) as fs, _cache(tmp_path, fs.url) as mc:
        mc.download(repo.repo_id)
    assert_snapshot_is(tmp_path / "cache", repo)
