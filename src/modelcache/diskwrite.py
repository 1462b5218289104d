"""Write bytes to a file whole, in pieces of ``STEP`` bytes.

Every write of blob data goes through here (downloads, small-file batches, imports, bundles), for
two reasons:

- **Whole or an error.** ``write``/``pwrite`` may write fewer bytes than asked (a disk that fills
  up part-way, a signal). A caller that ignores the count records bytes as written that are not
  on disk. Here a short write is continued, and a write that makes no progress raises.
- **Pieces of 256 KiB.** On a Linux page cache with large folios (ext4, xfs; 6.x kernels), a
  write of 1 MiB or more at once asks for 1–2 MiB folios. Measured on a 2-core VM (virtio,
  free-page reporting on): 2 GiB written in 1 MiB writes cost 0.5–6 CPU-s, 2 MiB writes 4.2–4.6,
  256 KiB writes 0.5 every time (128 KiB: 1.0). In a real download with 16 streams, splitting
  each 1 MiB received into 256 KiB writes cut scenario 1 of ``make bench`` by ~10–30% of its
  CPU; 128 KiB and 512 KiB pieces measured the same as 256 KiB there. See
  ``benchmarks/README.md``. The extra system calls cost nothing measurable (8,192 per 2 GiB).
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable

__all__ = ["STEP", "pwrite_all", "write_all"]

STEP = 256 * 1024
"""Bytes per ``write`` system call."""


def pwrite_all(fd: int, data: bytes | bytearray | memoryview, offset: int) -> None:
    """Write all of ``data`` at ``offset`` of ``fd`` (``pwrite``: the file offset is not moved;
    safe from several threads on one fd)."""
    _in_pieces(lambda piece, done: os.pwrite(fd, piece, offset + done), data, f"at byte {offset}")


def write_all(fd: int, data: bytes | bytearray | memoryview) -> None:
    """Write all of ``data`` at ``fd``'s current offset (``write``)."""
    _in_pieces(lambda piece, _done: os.write(fd, piece), data, "")


def _in_pieces(write: Callable[[memoryview, int], int], data: bytes | bytearray | memoryview, where: str) -> None:
    """``write(piece, bytes_done_so_far)`` until every byte is taken, ``STEP`` bytes at most a call."""
    view = memoryview(data).cast("B")
    done, total = 0, len(view)
    while done < total:
        n = write(view[done: done + STEP], done)
        if n <= 0:
            raise OSError(errno.EIO, f"no progress writing {where} + {done}" if where else "no progress writing")
        done += n
