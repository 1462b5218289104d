"""Start writing downloaded bytes to disk while the download goes on (Linux ``sync_file_range``).

A blob is fsynced before it is published. Without help, the kernel keeps every byte of a
download dirty in the page cache until that fsync (background writeback starts only past
``dirty_background_ratio`` of RAM, or after ``dirty_expire_centisecs``: 30 s), so the fsync at
the end of each file writes the whole file: ~50 ms for 128 MiB on a fast local disk, seconds for
a multi-GB shard on a network volume — time in which the network is idle. ``Writeback.wrote``
asks the kernel to start writing each stretch of ``STEP`` bytes as soon as a stream has written
it (``SYNC_FILE_RANGE_WRITE``: asynchronous, the pages stay cached for the hash read-back and
for the engine that loads the model next), so disk and network overlap and the final fsync
finds little left to do. It is only a hint: durability still comes from the fsync.

Where the call does not exist (not Linux, a libc without it, a seccomp profile that refuses it)
or the file system rejects it, it is switched off for the process after the first such failure;
nothing else changes. Any other failure (a closed descriptor, an I/O error) only skips that one
call: in a long-running ``serve --upstream``, one bad file does not end it for every later one.
"""

from __future__ import annotations

import errno
import sys
import threading

__all__ = ["STEP", "Writeback", "start_writeback"]

STEP = 8 << 20
"""Bytes a stream writes before it asks the kernel to start writing them out."""

_SYNC_FILE_RANGE_WRITE = 2
_UNSUPPORTED = frozenset({errno.ENOSYS, errno.EPERM, errno.EACCES, errno.EINVAL, errno.ESPIPE, errno.EOPNOTSUPP})
"""Errors that say the call will never work here (seccomp refuses it, a file system without it)."""
_lock = threading.Lock()
_call: object = None  # None: not looked up yet; False: unavailable; else the libc function


def _lookup() -> object:
    global _call
    with _lock:
        if _call is None:
            _call = False
            if sys.platform.startswith("linux"):
                try:
                    import ctypes

                    libc = ctypes.CDLL(None, use_errno=True)
                    fn = libc.sync_file_range
                    fn.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
                    fn.restype = ctypes.c_int
                    _call = fn
                except (OSError, AttributeError, ImportError):
                    _call = False
        return _call


def start_writeback(fd: int, offset: int, length: int) -> bool:
    """Ask the kernel to start writing ``length`` bytes of ``fd`` from ``offset`` (not waiting
    for them). False, and off for the rest of the process, when the call is unavailable or
    refused."""
    global _call
    fn = _call if _call is not None else _lookup()
    if not fn or length <= 0:
        return False
    if fn(fd, offset, length, _SYNC_FILE_RANGE_WRITE) != 0:  # type: ignore[operator]
        import ctypes

        if ctypes.get_errno() in _UNSUPPORTED:
            _call = False  # not on this system or this file system: stop asking
        return False  # EBADF, EIO...: this file's problem (the fsync will say), not the process's
    return True


class Writeback:
    """One stream's writeback cursor: ``wrote(pos)`` after each write; every ``STEP`` bytes
    written since the last call start being written out; ``flush()`` at the end of the stream
    starts the rest."""

    __slots__ = ("fd", "start", "step")

    def __init__(self, fd: int, start: int, step: int = STEP) -> None:
        self.fd, self.start, self.step = fd, start, step

    def wrote(self, pos: int) -> None:
        if pos - self.start >= self.step:
            self.flush(pos)

    def flush(self, pos: int) -> None:
        if pos > self.start:
            start_writeback(self.fd, self.start, pos - self.start)
        self.start = pos
