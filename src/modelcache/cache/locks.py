"""Locks that work where ``flock`` silently does nothing (NFS, Lustre, GPFS).

A lock is a file created with ``O_CREAT | O_EXCL`` (atomic on NFSv3+ and every local
filesystem) holding who owns it; the owner touches it every ``heartbeat`` seconds. A lock is
*dead* when its owner is a process on this host that no longer runs, or when its mtime is
older than ``stale_after`` by the filesystem's own clock (measured by touching a probe file
on the same volume, so clock skew between hosts does not matter). A dead lock is taken over
by renaming it aside — only one contender's rename succeeds.

Locks only avoid duplicate work: correctness never depends on them (every write is an
atomic rename of verified bytes).
"""

from __future__ import annotations

import json
import os
import socket
import stat
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from ..files import CorruptState, HeldFolders, read_json_state, shared_mkdir

__all__ = ["FileLock", "LockInfo", "fs_now", "read_lock", "lock_is_dead"]

DEFAULT_STALE = 30.0
DEFAULT_HEARTBEAT = 5.0


@dataclass(frozen=True)
class LockInfo:
    """What a lock file says: owner host, pid and token, purpose, and its mtime (the last heartbeat)."""

    host: str
    pid: int
    token: str
    purpose: str
    mtime: float

    def to_dict(self) -> dict[str, object]:
        """``{"host", "pid", "purpose", "mtime"}`` (the token left out)."""
        return {"host": self.host, "pid": self.pid, "purpose": self.purpose, "mtime": self.mtime}


def fs_now(directory: Path) -> float:
    """'Now' by the clock of the filesystem holding ``directory`` (falls back to local time)."""
    probe = directory / f".mc-clock.{uuid.uuid4().hex}"
    try:
        fd = os.open(probe, os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_WRONLY, 0o664)
        try:
            now = os.fstat(fd).st_mtime
        finally:
            os.close(fd)
            probe.unlink()
        return now
    except OSError:
        return time.time()


def read_lock(path: Path | str, dir_fd: int | None = None) -> LockInfo | None:
    """Who holds the lock at ``path`` (with ``dir_fd``: a name in that folder); None when there is none.

    Never follows or blocks on what is there. An empty file is a lock being written: judged
    by its age. Anything a lock never is — a folder, FIFO or link planted there, or bytes
    that are not a lock record — reads as the lock of a long-dead owner (taken over at once),
    so junk can neither hang nor wedge a writer.
    """
    return _read_lock(path, dir_fd)[0]


def _read_lock(path: Path | str, dir_fd: int | None) -> tuple[LockInfo | None, os.stat_result | None]:
    """``read_lock``, and the ``lstat`` taken just before the file was read."""
    try:
        st = os.lstat(path, dir_fd=dir_fd)
    except OSError:
        return None, None
    if stat.S_ISREG(st.st_mode) and st.st_size == 0:
        return LockInfo("", -1, "", "", st.st_mtime), st  # half-written: judge by age
    try:
        data = read_json_state(path, max_bytes=64 * 1024, max_depth=4, dir_fd=dir_fd)
    except CorruptState:
        return LockInfo("", -1, "", "", 0.0), st  # not a lock modelcache wrote: dead
    if data is None:
        return None, st
    pid, host, token = data.get("pid"), data.get("host"), data.get("token")  # type: ignore[union-attr]
    if not (isinstance(pid, int) and not isinstance(pid, bool) and 0 < pid < 1 << 31 and isinstance(host, str)
            and isinstance(token, str) and token):
        return LockInfo("", -1, "", "", 0.0), st  # JSON, but not a lock record modelcache wrote: dead
    return LockInfo(_text(data.get("host")), pid, _text(data.get("token")),  # type: ignore[union-attr]
                    _text(data.get("purpose")), st.st_mtime), st


def _text(value: object) -> str:
    return value[:200] if isinstance(value, str) else ""


_ME: list[object] = []
os.register_at_fork(after_in_child=_ME.clear)


def _hostname() -> str:
    """This host's name, asked once per process (a ``uname`` per lock adds up over thousands)."""
    if not _ME:
        _ME.extend((socket.gethostname(), os.getpid()))
    return _ME[0]  # type: ignore[return-value]


def _pid() -> int:
    """This process's pid, asked once per process (a forked child asks again)."""
    _hostname()
    return _ME[1]  # type: ignore[return-value]


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def lock_is_dead(info: LockInfo, now: float, stale_after: float = DEFAULT_STALE) -> bool:
    """True when the lock's owner is gone: a dead process on this host, or no heartbeat for ``stale_after`` seconds.

    ``now`` is by the filesystem's clock, as the lock's mtime is.
    """
    if info.host == _hostname() and info.pid > 0 and not _pid_alive(info.pid):
        return True
    return now - info.mtime > stale_after


class _Heartbeat:
    """One thread per process touches every lock it holds (not one thread per lock: a download
    of thousands of small files holds thousands of locks)."""

    def __init__(self) -> None:
        self._paths: dict[str, float] = {}  # path -> interval
        self._tokens: dict[str, str] = {}  # path -> the token we hold it with
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._last: dict[str, float] = {}

    def add(self, path: Path, interval: float, token: str = "") -> None:
        with self._lock:
            self._paths[str(path)] = interval
            self._tokens[str(path)] = token
            self._last[str(path)] = time.monotonic()
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="mc-lock-heartbeat", daemon=True)
                self._thread.start()

    def remove(self, path: Path) -> None:
        with self._lock:
            self._paths.pop(str(path), None)
            self._last.pop(str(path), None)
            self._tokens.pop(str(path), None)

    def _run(self) -> None:
        while True:
            with self._lock:
                if not self._paths:
                    self._thread = None
                    return
                now = time.monotonic()
                due = [p for p, every in self._paths.items() if now - self._last.get(p, 0) >= every]
                tick = min(self._paths.values())
                for p in due:
                    self._last[p] = now
            for p in due:
                with self._lock:
                    token = self._tokens.get(p, "")
                info = read_lock(Path(p))
                if token and (info is None or info.token != token):
                    # taken over while we stalled (SIGSTOP, a frozen VM): never keep another's lock fresh
                    self.remove(Path(p))
                    continue
                try:
                    os.utime(p, follow_symlinks=False)
                except (OSError, NotImplementedError):
                    pass
            time.sleep(min(tick, 1.0))


_HEARTBEAT = _Heartbeat()


def _key(st: os.stat_result) -> tuple[int, int, int, int, int]:
    """What changes when a lock file is replaced (a new inode), rewritten or touched."""
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns


class FileLock:
    """``with FileLock(path):`` — or ``try_acquire()`` / ``release()``; heartbeats while held.

    The lock's folder is made when missing: through ``folders`` (the run's ``HeldFolders``,
    whose root holds ``path``: made once, then every name is reached through it by fd), or
    else by path on each acquire (refused outside ``root`` when given).
    """

    def __init__(self, path: Path, *, purpose: str = "", stale_after: float = DEFAULT_STALE,
                 heartbeat: float = DEFAULT_HEARTBEAT, root: Path | None = None,
                 folders: HeldFolders | None = None) -> None:
        self.path = Path(path)
        self.root = root
        self.folders = folders
        self.purpose = purpose
        self.stale_after = stale_after
        self.heartbeat = min(heartbeat, stale_after / 3)
        self.token = uuid.uuid4().hex
        self.held = False
        self._seen: tuple[tuple[int, int, int, int, int], float] | None = None
        """(``_key`` of the lock file, monotonic time) when it was last written or read with our token."""

    def try_acquire(self) -> bool:
        """Take the lock now if it is free or dead (a dead lock is taken over); False when someone holds it.

        On success the lock is heartbeated in the background until ``release``. Does not wait for a holder.
        """
        if self.folders is None:
            shared_mkdir(self.path.parent, self.root)
            return self._try_acquire(None)
        with self.folders.held(self.path.parent, create=True) as folder:
            return self._try_acquire(folder)

    def _at(self, name: str, folder: int | None) -> str | Path:
        """How to name ``name`` (in the lock's folder): as is relative to ``folder``, or by path."""
        return name if folder is not None else self.path.parent / name

    def _try_acquire(self, folder: int | None) -> bool:
        name = self._at(self.path.name, folder)
        for _ in range(3):
            try:
                fd = os.open(name, os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_WRONLY | os.O_CLOEXEC, 0o664,
                             dir_fd=folder)
            except FileExistsError:
                info = read_lock(name, folder)
                if info is None:
                    continue  # released meanwhile: try again
                if not lock_is_dead(info, fs_now(self.path.parent), self.stale_after):
                    return False
                aside = self._at(f"{self.path.name}.dead.{uuid.uuid4().hex[:8]}", folder)
                try:
                    os.rename(name, aside, src_dir_fd=folder, dst_dir_fd=folder)
                except FileNotFoundError:
                    continue
                # Renamed something: make sure it was the dead lock we judged, not a new one.
                moved = read_lock(aside, folder)
                if moved is not None and moved.token != info.token and not lock_is_dead(
                    moved, fs_now(self.path.parent), self.stale_after
                ):
                    try:  # put the live lock back if nobody took the name
                        os.link(aside, name, src_dir_fd=folder, dst_dir_fd=folder, follow_symlinks=False)
                    except OSError:
                        pass
                try:
                    os.unlink(aside, dir_fd=folder)
                except OSError:
                    pass
                continue
            try:
                try:
                    os.fchmod(fd, 0o664)  # group-writable: another pod of the group may take it over
                except OSError:
                    pass
                view = memoryview(json.dumps({"host": _hostname(), "pid": _pid(), "token": self.token,
                                              "purpose": self.purpose, "created": time.time()}).encode())
                while view:
                    view = view[os.write(fd, view):]
                st = os.fstat(fd)
            finally:
                os.close(fd)
            self._seen = (_key(st), time.monotonic())
            self.held = True
            self._start_heartbeat()
            return True
        return False

    def acquire(self, timeout: float | None = None, poll: float = 0.2) -> bool:
        """Take the lock, polling every ``poll`` seconds; False when ``timeout`` seconds passed first.

        Blocks; ``timeout=None`` waits forever.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.try_acquire():
            if deadline is not None and time.monotonic() >= deadline:
                return False
            time.sleep(poll)
        return True

    def still_mine(self) -> bool:
        """The fencing check: is the lock file still the one we created (same token)?

        One ``lstat`` when the file is, to the nanosecond, the inode we last wrote or read with
        our token (same inode, size, mtime and ctime) and that was less than a heartbeat
        interval ago; otherwise it is read again. A takeover renames the file aside and creates
        a new one (another inode, fresh times), a heartbeat touches it: either makes it read
        again. And a holder stopped past the staleness window (more than three heartbeat
        intervals) reads it again whatever ``lstat`` says (an NFS client may answer it from a
        stale attribute cache; the ``open`` of a read revalidates): it always sees it lost the lock.
        """
        if self.folders is None or self.folders.closed:
            return self._still_mine(None)
        with self.folders.held(self.path.parent) as folder:
            return self._still_mine(folder)

    def _still_mine(self, folder: int | None) -> bool:
        seen = self._seen
        if seen is not None and time.monotonic() - seen[1] < self.heartbeat:
            try:
                if _key(os.lstat(self._at(self.path.name, folder), dir_fd=folder)) == seen[0]:
                    return True
            except OSError:
                return False
        return self._read_mine(folder)

    def _read_mine(self, folder: int | None) -> bool:
        name = self._at(self.path.name, folder)
        self._seen = None
        info, before = _read_lock(name, folder)
        if info is None or info.token != self.token or before is None:
            return False
        try:  # remembered only if the file did not change while it was read
            after = os.lstat(name, dir_fd=folder)
        except OSError:
            return True  # it was ours when read; the next check reads it again
        if _key(before) == _key(after):
            self._seen = (_key(after), time.monotonic())
        return True

    def release(self) -> None:
        """Stop the heartbeat and remove the lock file if it is still ours (idempotent)."""
        _HEARTBEAT.remove(self.path)
        if self.held and self.still_mine():
            try:
                if self.folders is None or self.folders.closed:
                    self.path.unlink()
                else:
                    with self.folders.held(self.path.parent) as folder:
                        os.unlink(self.path.name, dir_fd=folder)
            except FileNotFoundError:
                pass
        self.held = False
        self._seen = None

    def _start_heartbeat(self) -> None:
        _HEARTBEAT.add(self.path, self.heartbeat, self.token)

    def __enter__(self) -> FileLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
