"""Opening a partial download's files: regular files only, never through a link, never blocking."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from ...errors import CacheError

__all__ = ["open_regular"]


def _unlink_entry(path: Path) -> None:
    """Remove a directory entry (a link is removed itself, never its target)."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except IsADirectoryError:
        raise CacheError(
            f"{path} is a directory where a partial download belongs",
            "remove it (it was not made by modelcache) and run the download again",
        ) from None
    except PermissionError as exc:
        if os.path.isdir(path) and not os.path.islink(path):
            raise CacheError(f"{path} is a directory where a partial download belongs",
                             "remove it (it was not made by modelcache) and run the download again") from None
        raise exc


def open_regular(path: Path, flags: int) -> int | None:
    """Open an existing *regular* file without following a link and without blocking.

    Returns None when there is nothing usable: absent, or a link/FIFO/socket/device, which is
    removed (the entry itself). A directory is a clear ``CacheError``.
    """
    try:
        before = os.lstat(path)
    except FileNotFoundError:
        return None
    if stat.S_ISDIR(before.st_mode):
        _unlink_entry(path)  # raises the clear error
        return None
    if not stat.S_ISREG(before.st_mode):
        _unlink_entry(path)
        return None
    try:
        fd = os.open(path, flags | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENXIO, errno.EISDIR):  # swapped for a link/FIFO meanwhile
            _unlink_entry(path)
            return None
        raise
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or (st.st_dev, st.st_ino) != (before.st_dev, before.st_ino):
        os.close(fd)
        _unlink_entry(path)
        return None
    return fd
