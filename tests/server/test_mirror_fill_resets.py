"""A mirror fill's ``resets``: readers stream from the writer's own inode and abort their
response when ``resets`` changes. It must change whenever the bytes a reader may have streamed
stop being the ones the fill vouches for — whatever happened before (a bad digest, then a lost
lock: counts that add up to the same total must not hide the second event)."""

from __future__ import annotations

import os
from pathlib import Path

from modelcache.hashing import git_blob_sha1
from modelcache.hub.download.assembly import Assembly
from modelcache.protocol import FileEntry
from modelcache.server.mirror import Fill


def _assembly(tmp_path: Path, data: bytes) -> Assembly:
    entry = FileEntry("w.bin", len(data), git_blob_sha1(data))
    blobs = tmp_path / "cache" / "models--org--r" / "blobs"
    blobs.mkdir(parents=True, exist_ok=True)
    return Assembly(entry, blobs / f"{entry.etag}.mc.incomplete")


def test_a_lost_writer_after_a_bad_digest_changes_resets(tmp_path: Path) -> None:
    data = os.urandom(4096)
    fill = Fill(FileEntry("w.bin", len(data), git_blob_sha1(data)))
    first = _assembly(tmp_path, data)
    try:
        fill.switch(first)
        first.reset()  # its first attempt had a bad digest: readers that streamed it aborted
        seen = fill.resets  # a reader starts now, on the writer's inode
        fill.switch(None)  # the writer loses the blob's lock: another process finishes it
        assert fill.resets != seen  # (1 reset + 0 drops == 0 resets + 1 drop: the sum hid it)
        second = _assembly(tmp_path, data)
        try:
            fill.switch(second)  # or this process takes the lock back, with a new writer
            assert fill.resets != seen
        finally:
            second.close()
    finally:
        first.close()


def test_any_change_of_writer_changes_resets(tmp_path: Path) -> None:
    data = os.urandom(4096)
    fill = Fill(FileEntry("w.bin", len(data), git_blob_sha1(data)))
    a, b = _assembly(tmp_path, data), _assembly(tmp_path, data)
    try:
        fill.switch(a)
        seen = fill.resets
        fill.switch(b)  # (a second round after a gc removed what the first installed)
        assert fill.resets != seen
        assert fill.started.is_set()
    finally:
        a.close()
        b.close()
