"""Blob bytes are written whole or not at all, in pieces of ``diskwrite.STEP``: a short write is
continued (a download whose every ``pwrite`` is cut short still publishes the exact bytes), a
write that makes no progress is an error, never bytes recorded as written that are not."""

from __future__ import annotations

import hashlib
import json
import os
import threading
from pathlib import Path

import pytest
from helpers.fault_server import Repo, fault_server
from helpers.repos import assert_snapshot_is

from modelcache import ModelCache, Settings, TokenSource
from modelcache.diskwrite import STEP, pwrite_all, write_all

MiB = 1 << 20


def _spy(monkeypatch: pytest.MonkeyPatch, name: str, cap: int | None = None) -> list[int]:
    """Record the length asked of every ``os.<name>`` call; with ``cap``, write at most that much."""
    asked: list[int] = []
    real = getattr(os, name)

    def call(fd: int, data: memoryview, *rest: int) -> int:
        asked.append(len(data))
        return real(fd, data[:cap] if cap else data, *rest)

    monkeypatch.setattr(os, name, call)
    return asked


def test_pwrite_all_writes_every_byte_at_its_offset_in_pieces(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = os.urandom(3 * STEP + 777)
    fd = os.open(tmp_path / "f", os.O_CREAT | os.O_RDWR, 0o600)
    try:
        asked = _spy(monkeypatch, "pwrite")
        pwrite_all(fd, memoryview(bytearray(data)), 5000)
        assert max(asked) == STEP and sum(asked) == len(data)
        assert os.lseek(fd, 0, os.SEEK_CUR) == 0  # the file offset is not moved
    finally:
        os.close(fd)
    got = (tmp_path / "f").read_bytes()
    assert got[:5000] == b"\0" * 5000 and got[5000:] == data


@pytest.mark.parametrize("name, call", [("pwrite", lambda fd, d: pwrite_all(fd, d, 0)), ("write", write_all)])
def test_a_short_write_is_continued(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, call: object) -> None:
    data = os.urandom(STEP + 10_000)
    fd = os.open(tmp_path / "f", os.O_CREAT | os.O_RDWR, 0o600)
    try:
        _spy(monkeypatch, name, cap=999)  # the kernel takes 999 bytes a call
        call(fd, data)  # type: ignore[operator]
    finally:
        os.close(fd)
    assert (tmp_path / "f").read_bytes() == data


@pytest.mark.parametrize("name, call", [("pwrite", lambda fd, d: pwrite_all(fd, d, 0)), ("write", write_all)])
def test_a_write_that_makes_no_progress_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str,
                                                    call: object) -> None:
    fd = os.open(tmp_path / "f", os.O_CREAT | os.O_RDWR, 0o600)
    try:
        monkeypatch.setattr(os, name, lambda *a: 0)
        with pytest.raises(OSError, match="no progress"):
            call(fd, b"x" * 10)  # type: ignore[operator]
    finally:
        os.close(fd)


def test_nothing_to_write_makes_no_call(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    asked = _spy(monkeypatch, "pwrite")
    pwrite_all(-1, b"", 0)  # not even a bad descriptor is touched
    write_all(-1, memoryview(b""))
    assert asked == []


def test_threads_writing_one_file_at_their_offsets(tmp_path: Path) -> None:
    parts = [os.urandom(STEP * 2 + i * 1000) for i in range(6)]
    offsets = [sum(len(p) for p in parts[:i]) for i in range(len(parts))]
    fd = os.open(tmp_path / "f", os.O_CREAT | os.O_RDWR, 0o600)
    try:
        threads = [threading.Thread(target=pwrite_all, args=(fd, p, o)) for p, o in zip(parts, offsets)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        os.close(fd)
    assert (tmp_path / "f").read_bytes() == b"".join(parts)


def test_a_download_whose_every_write_is_cut_short_publishes_the_exact_bytes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The streams hash what they received; the disk must hold the same bytes. Cut every ``pwrite``
    short (a disk that takes a little at a time) and the snapshot is still exact, big file and small."""
    tokenizer = json.dumps({"model": {"vocab": {f"t{i}": i for i in range(20_000)}}}).encode()  # > STEP
    big = (hashlib.sha256(b"short").digest() * (9 * MiB // 32 + 1))[: 9 * MiB + 321]
    repo = Repo("org/short", {"config.json": b'{"model_type": "llama"}', "tokenizer.json": tokenizer,
                              "model.safetensors": big})
    _spy(monkeypatch, "pwrite", cap=4096 + 17)
    _spy(monkeypatch, "write", cap=1000)
    with fault_server(repo) as fs:
        settings = Settings(cache_dir=tmp_path / "cache", endpoint=fs.url, token=TokenSource(value=None, origin="test"),
                            chunk_size=4 * MiB, connections=4, retry_base=0.01, retry_cap=0.2)
        with ModelCache(settings) as mc:
            mc.download(repo.repo_id)
    assert_snapshot_is(tmp_path / "cache", repo)
