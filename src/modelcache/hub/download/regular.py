"""Opening a partial download's files: regular files only, never through a link, never blocking."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from ...errors import CacheError

__all__ = ["open_regular"]


def _is_dir(path: Path | str, dir_fd: int | None) -> bool:
    try:
        return stat.S_ISDIR(os.lstat(path, dir_fd=dir_fd).st_mode)
    except OSError:
        return False


def _unlink_entry(path: Path | str, dir_fd: int | None = None, shown: Path | str | None = None) -> None:
    """Remove a directory entry (a link is removed itself, never its target)."""
    shown = path if shown is None else shown
    try:
        os.unlink(path, dir_fd=dir_fd)
    except FileNotFoundError:
        pass
    except IsADirectoryError:
        raise CacheError(
            f"{shown} is a directory where a partial download belongs",
            "remove it (it was not made by modelcache) and run the download again",
        ) from None
    except PermissionError as exc:
        if _is_dir(path, dir_fd):
            raise CacheError(f"{shown} is a directory where a partial download belongs",
                             "remove it (it was not made by modelcache) and run the download again") from None
        raise exc


def open_regular(path: Path | str, flags: int, dir_fd: int | None = None,
                 shown: Path | str | None = None) -> int | None:
    """Open an existing *regular* file without following a link and without blocking.

    With ``dir_fd``, ``path`` is a name in that folder (``shown`` names it in errors). Returns
    None when there is nothing usable: absent, or a link/FIFO/socket/device, which is removed
    (the entry itself). A directory is a clear ``CacheError``.
    """
    try:
        before = os.lstat(path, dir_fd=dir_fd)
    except FileNotFoundError:
        return None
    if stat.S_ISDIR(before.st_mode):
        _unlink_entry(path, dir_fd, shown)  # raises the clear error
        return None
    if not stat.S_ISREG(before.st_mode):
        _unlink_entry(path, dir_fd, shown)
        return None
    try:
        fd = os.open(path, flags | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dir_fd)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENXIO, errno.EISDIR):  # swapped for a link/FIFO meanwhile
            _unlink_entry(path, dir_fd, shown)
            return None
        raise
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or (st.st_dev, st.st_ino) != (before.st_dev, before.st_ino):
        os.close(fd)
        _unlink_entry(path, dir_fd, shown)
        return None
    return fd
