"""Opening a partial blob so that no two live writers ever share an inode.

The invariant that makes a stale lock holder harmless (issue #14.1): **a live process only
ever writes into an inode that no other live process holds open for writing.** A writer that
is SIGSTOPped past the lock's staleness window keeps its file descriptor, so the inode it
holds is never resumed in place by the next holder, and so it is never the one published.

Every writer's inode has two names: the shared ``blobs/<etag>.mc.incomplete`` (``N``: found
and resumed after a kill) and the writer's private ``blobs/<etag>.<random>.w.incomplete``
(``P``: what it installs — renamed over ``blobs/<etag>`` once verified, so what gets published
is always the inode that writer verified, never "whatever file is called N now"). The state
file ``blobs/<etag>.mc.state`` (``S``) names the inode, its writer and ``P``.

1. ``N`` is opened without following a link (``O_NOFOLLOW``) and without blocking
   (``O_NONBLOCK``); anything but a regular file (a planted symlink, FIFO, socket, device) is
   removed — the entry itself, never its target; a directory is a clear error. A file with
   hard links other than its ``P`` is never resumed, copied or written.
2. ``S`` (read the same way, bounded size, validated) says which byte ranges are written, for
   which inode, and by which process (host, boot + pid namespace, pid). The inode is resumed
   *in place* only when that process is provably gone (same host and pid namespace, pid not
   running; or this process, and not open here): the taker renames the gone writer's ``P`` to
   its own, so of two concurrent takers only one gets it. Otherwise the written ranges are
   copied into a new inode (``copy_file_range``: a reflink or a server-side copy where the
   filesystem can), which then replaces ``N``; a stale holder that wakes up writes into a file
   nobody will ever publish but itself (and it only installs after re-checking its lock).
   Until that swap ``N`` still holds the old bytes: a kill during the copy loses nothing.
3. ``S`` is rewritten naming this writer *before* its inode is reachable as ``N``, so the
   next taker always knows who may still hold it. A partial with nothing to resume has no
   state at all (a stale one could match a recycled inode number).
"""

from __future__ import annotations

import errno
import os
import stat
import uuid
from pathlib import Path

from ...diskwrite import pwrite_all
from .regular import open_regular
from .state import (
    OPEN_INODES,
    _OPEN_LOCK,
    read_state,
    release_inode,
    valid_ranges,
    write_state,
    writer_gone,
    writer_identity,
)

__all__ = ["OPEN_INODES", "claim_partial", "open_regular", "read_state", "release_inode", "resumable_in_place",
           "same_inode", "state_path_for", "write_state", "writer_gone", "writer_identity"]  # state: re-exports

_COPY_STEP = 64 * 1024 * 1024


Range = tuple[int, int]


def state_path_for(partial: Path) -> Path:
    """``<etag>.mc.incomplete`` → ``<etag>.mc.state``."""
    return partial.with_name(partial.name.replace(".incomplete", ".state"))


def _private_name(partial: Path, kind: str) -> str:
    etag = partial.name.split(".")[0]
    return f"{etag}.{uuid.uuid4().hex[:12]}.{kind}.incomplete"


def _new_inode(dfd: int, partial: Path) -> tuple[int, str]:
    tmp = _private_name(partial, "w")
    fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644, dir_fd=dfd)
    return fd, tmp


def _copy_ranges(src: int, dst: int, ranges: list[Range]) -> None:
    for a, b in ranges:
        pos = a
        while pos < b:
            try:
                if not hasattr(os, "copy_file_range"):  # (not Linux)
                    raise OSError(errno.ENOSYS, "no copy_file_range")
                n = os.copy_file_range(src, dst, min(_COPY_STEP, b - pos), pos, pos)
            except OSError as exc:
                if exc.errno not in (errno.EXDEV, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL):
                    raise
                data = os.pread(src, min(1 << 20, b - pos), pos)
                pwrite_all(dst, data, pos)
                n = len(data)
            if n <= 0:
                raise OSError(errno.EIO, f"short copy of a partial download at byte {pos}")
            pos += n


def claim_partial(partial: Path, etag: str, size: int, folder: int | None = None) -> tuple[int, list[Range], Path]:
    """Take the partial at ``partial`` for this writer: an fd on an inode nobody else writes, the
    byte ranges already in it, and the writer's private name for that inode (what gets
    installed). Creates a fresh partial when there is nothing to resume.

    Every file is opened, created and renamed relative to ``partial``'s folder held by a
    descriptor: ``folder`` (held by the caller for its run, see ``files.HeldFolders``), or else
    ``blobs/`` reached from the cache root (``partial``'s grand-grandparent) without following
    links (made when missing) for this call. A co-tenant who swaps ``blobs/`` for a link
    meanwhile gets nothing created in the folder it points at.
    """
    if folder is not None:
        fd, done, private = _claim(folder, partial, etag, size)
        return fd, done, partial.parent / private
    from ...files import open_folder

    dfd = open_folder(partial.parent, partial.parents[2], create=True)
    try:
        fd, done, private = _claim(dfd, partial, etag, size)
    finally:
        os.close(dfd)
    return fd, done, partial.parent / private


def _claim(dfd: int, partial: Path, etag: str, size: int) -> tuple[int, list[Range], str]:
    """``claim_partial`` in the folder held by ``dfd`` (``partial`` names the files in errors)."""
    name, state_name = partial.name, state_path_for(partial).name
    old_fd = _open_existing(dfd, name, partial)
    fd, private, in_place = -1, None, False
    done: list[Range] = []
    try:
        if old_fd is not None:
            st = os.fstat(old_fd)
            data = read_state(state_name, dfd) or {}
            # a file with unknown other hard links may be someone else's: never resumed nor copied
            done = valid_ranges(data, etag, size, st) if _links_are_ours(st, data, dfd) else []
            if (done and _fd_flags(old_fd) == os.O_RDWR and st.st_nlink == 2
                    and writer_gone(data.get("writer"), (st.st_dev, st.st_ino))):
                private = _take_in_place(dfd, str(data["private"]), partial, old_fd)
                if private is not None:
                    fd, old_fd, in_place = old_fd, None, True  # resume in place: its writer is gone
        if fd < 0:
            fd, private = _new_inode(dfd, partial)
            if done and old_fd is not None:
                _copy_ranges(old_fd, fd, done)  # the old inode stays resumable until the swap below
        _register(fd)
        if done:  # name this writer before its inode is findable again (it may be resumed later)
            write_state(partial.with_name(state_name), etag, size, fd, done, private,  # type: ignore[arg-type]
                        dir_fd=dfd)
        else:  # nothing to resume: no state at all (a stale one could match a recycled inode number)
            _unlink_quiet(state_name, dfd)
        if not in_place:  # the shared name (found and resumed after a kill)
            _publish_shared_name(dfd, private, name, partial, nothing_there=old_fd is None)  # type: ignore[arg-type]
        return fd, done, private  # type: ignore[return-value]
    except BaseException:
        if private is not None and not in_place:
            _unlink_quiet(private, dfd)
        if fd >= 0:
            release_inode(fd)
            os.close(fd)
        raise
    finally:
        if old_fd is not None:
            os.close(old_fd)


def _publish_shared_name(dfd: int, private: str, name: str, partial: Path, nothing_there: bool) -> None:
    """Make ``name`` (the shared partial name) a hard link to our inode, atomically: linked
    directly when nothing was there a moment ago (refused if something appeared meanwhile),
    else through a temp link renamed over whatever is there."""
    if nothing_there:
        try:
            os.link(private, name, src_dir_fd=dfd, dst_dir_fd=dfd, follow_symlinks=False)
            return
        except FileExistsError:
            pass  # something appeared meanwhile: swap it out atomically instead
    tmp = _private_name(partial, "link")
    os.link(private, tmp, src_dir_fd=dfd, dst_dir_fd=dfd, follow_symlinks=False)
    try:
        os.replace(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd)
    except BaseException:
        _unlink_quiet(tmp, dfd)
        raise


def _links_are_ours(st: os.stat_result, data: dict[str, object], dfd: int | None, folder: Path | None = None) -> bool:
    """A partial has its shared name and its writer's private name (recorded in the state);
    one name only is fine too (a leftover); any other hard link is not ours. The private name
    is looked up in the folder held by ``dfd`` (or else by path, in ``folder``)."""
    if st.st_nlink == 1:
        return True
    private = data.get("private")
    if st.st_nlink != 2 or not _is_private_name(private):
        return False
    try:
        where = str(private) if dfd is not None else folder / str(private)  # type: ignore[operator]
        pst = os.lstat(where, dir_fd=dfd)
    except OSError:
        return False
    return (pst.st_dev, pst.st_ino) == (st.st_dev, st.st_ino)


def _is_private_name(name: object) -> bool:
    return (isinstance(name, str) and len(name) < 200 and "/" not in name and "\0" not in name
            and name.endswith(".w.incomplete") and not name.startswith("."))


def _take_in_place(dfd: int, old_private: str, partial: Path, fd: int) -> str | None:
    """Rename the gone writer's private name to ours: of two concurrent takers only one gets
    it. None when that name no longer holds the inode behind ``fd`` (then nothing is moved)."""
    mine = _private_name(partial, "w")
    try:
        os.rename(old_private, mine, src_dir_fd=dfd, dst_dir_fd=dfd)
    except FileNotFoundError:
        return None
    if same_inode(mine, fd, dfd):
        return mine
    try:  # not the inode we inspected: give it back untouched
        os.rename(mine, old_private, src_dir_fd=dfd, dst_dir_fd=dfd)
    except OSError:
        pass
    return None


def resumable_in_place(partial: Path, etag: str, size: int) -> int:
    """Bytes on disk (allocated blocks) of a partial that would be resumed *in place*; 0 when
    there is none or when it would be copied (its writer may be alive): then the copy needs
    that much room again until the old one is dropped. For the free-space pre-check."""
    try:
        st = os.lstat(partial)
    except OSError:
        return 0
    if not stat.S_ISREG(st.st_mode) or st.st_nlink != 2:
        return 0
    data = read_state(state_path_for(partial)) or {}
    if not _links_are_ours(st, data, None, partial.parent):
        return 0
    if not valid_ranges(data, etag, size, st) or not writer_gone(data.get("writer"), (st.st_dev, st.st_ino)):
        return 0
    return min(st.st_size, st.st_blocks * 512)


def _open_existing(dfd: int, name: str, shown: Path) -> int | None:
    """The existing partial, read-write if we may (read-only: it can only be copied)."""
    try:
        return open_regular(name, os.O_RDWR, dfd, shown)
    except PermissionError:
        return open_regular(name, os.O_RDONLY, dfd, shown)


def _fd_flags(fd: int) -> int:
    import fcntl

    return fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE


def _unlink_quiet(name: str, dfd: int) -> None:
    try:
        os.unlink(name, dir_fd=dfd)
    except OSError:
        pass


def _register(fd: int) -> None:
    st = os.fstat(fd)
    with _OPEN_LOCK:
        OPEN_INODES.add((st.st_dev, st.st_ino))


def same_inode(path: Path | str, fd: int, dir_fd: int | None = None) -> bool:
    """Does the name ``path`` (not followed; with ``dir_fd``, a name in that folder) refer to
    the inode open at ``fd``?"""
    try:
        a, b = os.lstat(path, dir_fd=dir_fd), os.fstat(fd)
    except OSError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)
