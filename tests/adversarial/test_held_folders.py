"""Folders a download holds by descriptor for its whole run (``HeldFolders``): reached from the
cache root without following links, and every claim, install, link and lock goes through them.
A co-tenant who swaps one for a link *after* it was opened (a window that now lasts a whole
run) gets nothing written where the link points; a planted link or FIFO on the way is refused."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from modelcache.cache.layout import RepoLayout
from modelcache.cache.locks import FileLock
from modelcache.cache.publish import ensure_repo_dirs, install_blob_fd, link_file
from modelcache.errors import CacheError
from modelcache.files import HeldFolders
from modelcache.hub.download.partial import claim_partial, release_inode
from modelcache.protocol import FileEntry


def _listing(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def _entry(path: str, data: bytes) -> FileEntry:
    return FileEntry(path=path, size=len(data), blob_id=hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest())


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_a_link_on_the_way_is_refused_and_nothing_is_made_through_it(tmp_path: Path) -> None:
    root, outside = tmp_path / "cache", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (root / "models--org--x").symlink_to(outside)
    with HeldFolders(root) as folders:
        with pytest.raises(CacheError, match="refusing.*symlink"):
            with folders.held(root / "models--org--x" / "blobs", create=True):
                pass
    assert _listing(outside) == []


def test_a_file_or_fifo_where_a_folder_belongs_is_a_clear_error(tmp_path: Path) -> None:
    root = tmp_path / "cache"
    root.mkdir()
    (root / "file").write_text("x")
    os.mkfifo(root / "fifo")
    with HeldFolders(root) as folders:
        for name in ("file", "fifo"):
            with pytest.raises(CacheError, match="is not a folder") as err:
                with folders.held(root / name / "sub", create=True):
                    pass
            assert "rm" in err.value.hint
        with pytest.raises(CacheError, match="not inside the cache"):
            with folders.held(root / ".." / "elsewhere", create=True):
                pass
    assert not (tmp_path / "elsewhere").exists()


def test_folders_made_are_group_writable_and_missing_ones_are_not_made_unasked(tmp_path: Path) -> None:
    root = tmp_path / "cache"
    root.mkdir()
    with HeldFolders(root) as folders:
        with pytest.raises(FileNotFoundError):
            with folders.held(root / "a" / "b"):
                pass
        with folders.held(root / "a" / "b", create=True) as fd:
            os.mkdir("c", dir_fd=fd)
    assert (root / "a" / "b" / "c").is_dir()
    assert (root / "a").stat().st_mode & 0o7777 == 0o2775


def test_swapped_after_they_were_opened_every_write_lands_in_the_checked_folders(tmp_path: Path) -> None:
    """blobs/, the lock folder, the snapshot folder and .modelcache/tmp/ all swapped for links
    to an outside folder right after the run opened them: claim, install, link and lock all
    land in the folders that were checked (moved aside), nothing in the outside folder."""
    cache, outside = tmp_path / "cache", tmp_path / "outside"
    outside.mkdir()
    layout = RepoLayout(cache, "model", "org/swap")
    ensure_repo_dirs(layout)
    data = os.urandom(10_000)
    entry = _entry("sub/model.bin", data)
    commit = "c" * 40
    victims = [layout.blobs, layout.locks, layout.snapshot(commit) / "sub", layout.tmp]
    with HeldFolders(cache) as folders:
        for v in victims:
            with folders.held(v, create=True):
                pass
        for v in victims:  # the co-tenant's move: each checked folder is now a link out
            os.rename(v, v.with_name(v.name + ".moved"))
            v.symlink_to(outside)
        with folders.held(layout.blobs) as blobs:
            lock = FileLock(layout.blob_lock(entry.etag), folders=folders)
            assert lock.try_acquire() and lock.still_mine()
            fd, done, private = claim_partial(layout.partial(entry.etag), entry.etag, entry.size, blobs)
            try:
                assert done == []
                os.pwrite(fd, data, 0)
                assert install_blob_fd(layout, entry.etag, fd, private, folders) is not None
            finally:
                release_inode(fd)
                os.close(fd)
            link_file(layout, commit, entry, folders)
            lock.release()
    assert _listing(outside) == [], "a write went through a folder swapped for a link after it was opened"
    moved = layout.blobs.with_name("blobs.moved")
    assert (moved / entry.etag).read_bytes() == data
    assert os.readlink(layout.snapshot(commit) / "sub.moved" / "model.bin") == f"../../../blobs/{entry.etag}"
    assert not list(layout.locks.with_name(layout.locks.name + ".moved").iterdir())  # released


def test_a_folder_removed_meanwhile_is_made_again(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    layout = RepoLayout(cache, "model", "org/rm")
    ensure_repo_dirs(layout)
    commit = "d" * 40
    a, b = _entry("a.bin", b"a" * 10), _entry("b.bin", b"b" * 10)
    with HeldFolders(cache) as folders:
        link_file(layout, commit, a, folders)
        os.unlink(layout.snapshot_file(commit, "a.bin"))
        os.rmdir(layout.snapshot(commit))  # e.g. `rm --force` of the revision meanwhile
        link_file(layout, commit, b, folders)
    assert os.readlink(layout.snapshot_file(commit, "b.bin")) == f"../../blobs/{b.etag}"


def test_a_run_never_holds_more_descriptors_than_its_capacity(tmp_path: Path) -> None:
    root = tmp_path / "cache"
    root.mkdir()
    before = _open_fds()
    with HeldFolders(root, capacity=4) as folders:
        for i in range(30):
            with folders.held(root / "deep" / f"d{i}" / "x", create=True) as fd:
                os.mkdir("made", dir_fd=fd)
            assert _open_fds() <= before + 4
    assert _open_fds() == before
    assert all((root / "deep" / f"d{i}" / "x" / "made").is_dir() for i in range(30))
    with pytest.raises(ValueError):
        with folders.held(root / "deep"):
            pass
