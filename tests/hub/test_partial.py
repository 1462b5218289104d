"""Claiming a partial blob: resumed in place only when its writer is provably gone, copied into a
new inode otherwise; junk state is ignored; links and FIFOs are removed, never followed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from modelcache.hub.download.partial import (
    claim_partial,
    read_state,
    release_inode,
    resumable_in_place,
    state_path_for,
    write_state,
    writer_gone,
    writer_identity,
)

ETAG = "ab" * 32
SIZE = 1000


def _partial(tmp_path: Path, data: bytes = b"x" * 600) -> tuple[Path, int]:
    p = tmp_path / "blobs" / f"{ETAG}.mc.incomplete"
    p.parent.mkdir(parents=True, exist_ok=True)
    for old in p.parent.iterdir():
        old.unlink()
    p.write_bytes(data)
    return p, os.stat(p).st_ino


PRIVATE = f"{ETAG}.0123456789ab.w.incomplete"


def _with_private(p: Path) -> Path:
    """A partial as a writer leaves it: its shared name plus the writer's private name."""
    os.link(p, p.parent / PRIVATE)
    return p.parent / PRIVATE


def _close(fd: int) -> None:
    release_inode(fd)
    os.close(fd)


def test_a_gone_writer_is_resumed_in_place(tmp_path: Path) -> None:
    p, ino = _partial(tmp_path)
    old_private = _with_private(p)
    fd = os.open(p, os.O_RDWR)
    write_state(state_path_for(p), ETAG, SIZE, fd, [(0, 600)], PRIVATE)
    os.close(fd)  # this process wrote it and no longer has it open: gone
    assert resumable_in_place(p, ETAG, SIZE) == 600  # counted for the free-space check
    fd, done, private = claim_partial(p, ETAG, SIZE)
    try:
        assert done == [(0, 600)] and os.fstat(fd).st_ino == ino == os.stat(p).st_ino == os.stat(private).st_ino
        assert not old_private.exists() and private != old_private
        state = json.loads(state_path_for(p).read_text())
        assert state["writer"] == writer_identity() and state["private"] == private.name
    finally:
        _close(fd)


def test_a_live_writer_s_inode_is_copied_never_shared(tmp_path: Path) -> None:
    p, ino = _partial(tmp_path)
    _with_private(p)
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        st = os.stat(p)
        state_path_for(p).write_text(json.dumps({
            "etag": ETAG, "size": SIZE, "ino": st.st_ino, "dev": st.st_dev, "done": [[0, 600]],
            "private": PRIVATE, "writer": {**writer_identity(), "pid": child.pid}}))
        assert not writer_gone(json.loads(state_path_for(p).read_text())["writer"], (st.st_dev, st.st_ino))
        fd, done, private = claim_partial(p, ETAG, SIZE)
        try:
            assert done == [(0, 600)]
            assert os.fstat(fd).st_ino != ino and os.stat(p).st_ino == os.fstat(fd).st_ino == os.stat(private).st_ino
            assert os.pread(fd, 600, 0) == b"x" * 600
            assert (p.parent / PRIVATE).stat().st_ino == ino  # the live writer's own name: untouched
        finally:
            _close(fd)
    finally:
        child.kill()
        child.wait()


def test_other_hosts_and_pid_namespaces_are_never_gone(tmp_path: Path) -> None:
    me = writer_identity()
    dead = {**me, "pid": 999_999_999}
    assert writer_gone(dead, (0, 0))
    assert not writer_gone({**dead, "host": "another-pod"}, (0, 0))
    assert not writer_gone({**dead, "space": "other-boot|pid:[1]"}, (0, 0))
    assert not writer_gone({"host": me["host"], "pid": 999_999_999}, (0, 0))  # unknown namespace
    for junk in (None, [], {"pid": "1"}, {**me, "pid": True}, {**me, "pid": -1}):
        assert not writer_gone(junk, (0, 0))


def test_junk_state_means_start_over(tmp_path: Path) -> None:
    for junk in (b"\xff\xfe", b"[" * 100_000, b'{"etag": 1}', b"1e999",
                 json.dumps({"etag": ETAG, "size": SIZE, "done": [[0, "9"]]}).encode(),
                 json.dumps({"etag": ETAG, "size": SIZE, "done": [[-5, 10**30]]}).encode()):
        p, ino = _partial(tmp_path)
        state_path_for(p).write_bytes(junk)
        fd, done, _ = claim_partial(p, ETAG, SIZE)
        try:
            assert done == [] and os.fstat(fd).st_ino != ino and os.fstat(fd).st_size == 0
            assert not state_path_for(p).exists()
        finally:
            _close(fd)


def test_a_state_for_another_inode_is_ignored(tmp_path: Path) -> None:
    p, _ = _partial(tmp_path)
    state_path_for(p).write_text(json.dumps({"etag": ETAG, "size": SIZE, "ino": 1, "done": [[0, 600]],
                                             "writer": {**writer_identity(), "pid": 999_999_999}}))
    fd, done, _ = claim_partial(p, ETAG, SIZE)
    _close(fd)
    assert done == []


def test_a_foreign_hard_link_is_neither_resumed_nor_copied(tmp_path: Path) -> None:
    p, ino = _partial(tmp_path)
    outside = tmp_path / "outside"
    os.link(p, outside)  # e.g. a planted link to a file outside the cache
    st = os.stat(p)
    state_path_for(p).write_text(json.dumps({"etag": ETAG, "size": SIZE, "ino": st.st_ino, "dev": st.st_dev,
                                             "done": [[0, 600]], "private": PRIVATE,
                                             "writer": {**writer_identity(), "pid": 999_999_999}}))
    fd, done, _ = claim_partial(p, ETAG, SIZE)
    _close(fd)
    assert done == [] and os.stat(p).st_ino != ino and outside.read_bytes() == b"x" * 600


def test_read_state_never_follows_links_or_blocks(tmp_path: Path) -> None:
    target = tmp_path / "outside.json"
    target.write_text(json.dumps({"etag": ETAG}))
    link = tmp_path / "s.mc.state"
    link.symlink_to(target)
    assert read_state(link) is None and not os.path.lexists(link) and target.exists()
    fifo = tmp_path / "f.mc.state"
    os.mkfifo(fifo)
    assert read_state(fifo) is None and not os.path.lexists(fifo)
