"""A partial's state file and its writer: which ranges are written, in which inode, by whom.

The state (``blobs/<etag>.mc.state``) is read without following links or blocking, bounded in
size and validated field by field: junk means "nothing to resume", never a traceback. A writer
is identified by host, boot + pid namespace and pid, so "its writer is gone" can be *proved*
(same host and pid numbering, pid not running) — or is never assumed.
"""

from __future__ import annotations

import json
import os
import socket
import threading
from pathlib import Path

from ...errors import ModelCacheError
from .regular import open_regular

__all__ = ["MAX_STATE_BYTES", "OPEN_INODES", "read_state", "release_inode", "valid_ranges", "write_state",
           "writer_gone", "writer_identity"]

MAX_STATE_BYTES = 4 * 1024 * 1024

OPEN_INODES: set[tuple[int, int]] = set()
"""(dev, ino) of the partials this process has open: "this pid, but not open here" is gone."""
_OPEN_LOCK = threading.Lock()

Range = tuple[int, int]


def read_state(path: Path | str, dir_fd: int | None = None) -> dict[str, object] | None:
    """The partial's state file as a dict, or None (absent, not a regular file, junk, too big).

    With ``dir_fd``, ``path`` is a name in that folder."""
    try:
        fd = open_regular(path, os.O_RDONLY, dir_fd)
    except (OSError, ModelCacheError):
        return None
    if fd is None:
        return None
    try:
        if os.fstat(fd).st_size > MAX_STATE_BYTES:
            return None
        chunks = []
        while True:
            piece = os.read(fd, 1 << 20)
            if not piece:
                break
            chunks.append(piece)
        data = json.loads(b"".join(chunks))
    except (OSError, ValueError, RecursionError):
        return None
    finally:
        os.close(fd)
    return data if isinstance(data, dict) else None


def valid_ranges(data: dict[str, object], etag: str, size: int, st: os.stat_result | None) -> list[Range]:
    """The written ranges a state claims, if it is about this blob (and this inode, when known)."""
    if data.get("etag") != etag or data.get("size") != size:
        return []
    ino = data.get("ino")
    if ino is not None and (st is None or ino != st.st_ino or data.get("dev") not in (None, st.st_dev)):
        return []
    done = data.get("done")
    if not isinstance(done, list):
        return []
    have = st.st_size if st is not None else 0
    out: list[Range] = []
    for item in done:
        if (not isinstance(item, list) or len(item) != 2
                or not all(isinstance(x, int) and not isinstance(x, bool) for x in item)):
            return []
        a, b = item
        if 0 <= a < b <= size and a < have:
            out.append((a, min(b, have)))
    return out

def _process_space() -> str:
    """Which pid numbering this process lives in: boot id + pid namespace. Two pods with the same
    hostname (``hostNetwork``) or a rebooted host number their processes independently."""
    parts = []
    for path in ("/proc/sys/kernel/random/boot_id", "/proc/self/ns/pid"):
        try:
            parts.append(os.readlink(path) if path.endswith("/pid") else Path(path).read_text().strip())
        except OSError:
            parts.append("?")
    return "|".join(parts)


_ME: dict[str, object] = {}
"""This process's identity, worked out once (``uname``, ``getpid``, two ``/proc`` reads); a
forked child works out its own."""
os.register_at_fork(after_in_child=_ME.clear)


def _me() -> dict[str, object]:
    if not _ME:
        _ME.update(host=socket.gethostname(), space=_process_space(), pid=os.getpid())
    return _ME


def writer_identity() -> dict[str, object]:
    """Who writes a partial: host, pid numbering and pid (recorded in its state file)."""
    return dict(_me())


def writer_gone(writer: object, inode: tuple[int, int]) -> bool:
    """Is the process that last wrote this inode provably not running any more?"""
    if not isinstance(writer, dict):
        return False
    pid, me = writer.get("pid"), _me()
    if (writer.get("host") != me["host"] or writer.get("space") != me["space"]
            or not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0):
        return False  # another host, pid namespace or boot (or unknown): it may be alive, merely stalled
    if pid == me["pid"]:
        with _OPEN_LOCK:
            return inode not in OPEN_INODES
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False
    return False


def write_state(path: Path, etag: str, size: int, fd: int, done: list[Range], private: str,
                dir_fd: int | None = None, inode: tuple[int, int] | None = None) -> None:
    """Atomically write the state for the inode behind ``fd``, naming this process as its writer
    and ``private`` as the writer's own name for the inode.

    Written in the folder held by ``dir_fd`` (``path`` names it in errors) — or else in
    ``blobs/`` as reached from the cache root (``path``'s grand-grandparent) without following
    links (``CacheError`` if it is not a real folder there): a ``blobs/`` swapped for a link
    gets nothing. ``inode``: (dev, ino) of ``fd`` when the caller knows it."""
    from ...files import open_folder, replace_bytes_at

    dev, ino = inode if inode is not None else _inode(fd)
    data = {"etag": etag, "size": size, "ino": ino, "dev": dev,
            "writer": _me(), "private": private, "done": [list(r) for r in done]}
    body = json.dumps(data).encode()
    if dir_fd is not None:
        replace_bytes_at(dir_fd, path.name, body, mode=0o664, fsync=False, shown=path)
        return
    folder = open_folder(path.parent, path.parents[2])
    try:
        replace_bytes_at(folder, path.name, body, mode=0o664, fsync=False, shown=path)
    finally:
        os.close(folder)


def _inode(fd: int) -> tuple[int, int]:
    st = os.fstat(fd)
    return st.st_dev, st.st_ino


def release_inode(fd: int, inode: tuple[int, int] | None = None) -> None:
    """Forget an fd's inode (``inode``, when the caller knows it) in the in-process registry
    (before closing it)."""
    if inode is None:
        try:
            inode = _inode(fd)
        except OSError:
            return
    with _OPEN_LOCK:
        OPEN_INODES.discard(inode)
