"""Folders held by descriptor: reached from the cache root one component at a time, never through a link.

A path-based check ("does this folder resolve inside the cache?") followed by a path-based
write loses to a co-tenant who swaps a folder for a symlink in between. A folder opened here
is reached from the root with ``O_NOFOLLOW | O_DIRECTORY`` at every component (made, group-
writable, where missing and asked to), and everything done in it goes through that descriptor
(``os.open(name, dir_fd=)``, ``os.replace(src_dir_fd=, dst_dir_fd=)``, ``os.symlink(dir_fd=)``):
whatever is swapped in afterwards, the writes land in the folder that was checked, never
where a planted link points. (A folder a co-tenant *moves* elsewhere stays the same folder,
on the same filesystem: nothing is ever written into a folder that was not checked.)

``HeldFolders`` keeps such descriptors for one run (a download round), so a run that
publishes thousands of files checks each folder once, not once per file; ``open_folder`` is
the one-off form.
"""

from __future__ import annotations

import errno
import os
import stat
import threading
from pathlib import Path

from .errors import CacheError

__all__ = ["SHARED_DIR_MODE", "HeldFolders", "open_folder"]

SHARED_DIR_MODE = 0o2775  # group-writable, new entries inherit the group (shared volumes, fsGroup)
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | getattr(os, "O_CLOEXEC", 0)


def _parts(folder: Path | str, bases: tuple[str, ...]) -> tuple[str, ...] | None:
    """``folder``'s components below the root (given as its absolute and real paths); None when
    it is not the root or below it."""
    path = os.path.abspath(folder)
    for base in bases:
        if path == base:
            return ()
        prefix = base.rstrip(os.sep) + os.sep
        if path.startswith(prefix):
            parts = tuple(path[len(prefix):].split(os.sep))
            return None if any(p in ("", ".", "..") for p in parts) else parts
    return None


def _refusal(shown: Path, root: Path, name: str, parent_fd: int) -> CacheError:
    """The error for a component that is not a real folder: a link (planted?) or something else."""
    bad = shown
    try:
        is_link = stat.S_ISLNK(os.lstat(name, dir_fd=parent_fd).st_mode)
    except OSError:
        is_link = False
    if is_link:
        return CacheError(f"refusing to write into {shown}: {bad} is a symlink, not a folder inside the cache at "
                          f"{root} (planted?)", f"remove the link `{bad}`; modelcache makes the folder again")
    return CacheError(f"{bad} is not a folder (a file, FIFO or dangling link where a folder belongs)",
                      f"remove it (`rm '{bad}'`); modelcache makes the folder again")


def _open_child(parent_fd: int, name: str, create: bool, shown: Path, root: Path) -> int:
    """Open folder ``name`` of ``parent_fd`` without following a link; with ``create``, make it
    (group-writable) when missing. ``FileNotFoundError`` when missing and not ``create``."""
    for _ in range(3):
        try:
            return os.open(name, _DIR_FLAGS | os.O_NOFOLLOW, dir_fd=parent_fd)
        except (NotADirectoryError, IsADirectoryError):
            raise _refusal(shown, root, name, parent_fd) from None
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise _refusal(shown, root, name, parent_fd) from None
            if exc.errno != errno.ENOENT or not create:
                raise
        try:
            os.mkdir(name, SHARED_DIR_MODE, dir_fd=parent_fd)
        except FileExistsError:
            continue  # made meanwhile (or something planted: the open says which)
        fd = os.open(name, _DIR_FLAGS | os.O_NOFOLLOW, dir_fd=parent_fd)
        try:
            os.fchmod(fd, SHARED_DIR_MODE)  # the umask may have taken group-write away
        except OSError:
            pass
        return fd
    raise FileNotFoundError(errno.ENOENT, "the folder keeps disappearing", str(shown))


def _walk(start_fd: int, start: Path, parts: tuple[str, ...], create: bool, root: Path) -> int:
    """A new fd on ``start/parts...``, opened from ``start_fd`` one component at a time."""
    fd, shown = start_fd, start
    try:
        for part in parts:
            shown = shown / part
            nfd = _open_child(fd, part, create, shown, root)
            if fd != start_fd:
                os.close(fd)
            fd = nfd
    except BaseException:
        if fd != start_fd:
            os.close(fd)
        raise
    return fd if fd != start_fd else os.dup(start_fd)


def _not_inside(folder: Path | str, root: Path | str) -> CacheError:
    return CacheError(f"refusing to write into {folder}: it is not inside the cache at {root}",
                      "this is a bug in the caller; report it")


def _open_root(root: Path | str) -> int:
    # the root itself may be a link: the user chose it (``--cache-dir``); nothing below it is followed
    return os.open(root, _DIR_FLAGS)


def open_folder(folder: Path | str, root: Path | str, *, create: bool = False) -> int:
    """An fd (the caller closes it) on ``folder``, reached from ``root`` one component at a time
    without following links; with ``create``, missing folders are made group-writable.

    Raises ``CacheError`` when ``folder`` is not below ``root`` or a component is a link or
    not a folder, ``FileNotFoundError`` when a component is missing (and not ``create``).
    """
    bases = (os.path.abspath(root), os.path.realpath(root))
    parts = _parts(folder, bases)
    if parts is None:
        raise _not_inside(folder, root)
    rfd = _open_root(root)
    try:
        return _walk(rfd, Path(root), parts, create, Path(root))
    finally:
        os.close(rfd)


class HeldFolders:
    """The folders one run writes into, below ``root``: each opened once (as ``open_folder``)
    and held by its descriptor until ``close`` (``with HeldFolders(root) as folders:``).

    ``held(folder)`` yields the fd to use with ``dir_fd=`` (never close it). The first
    ``capacity`` folders stay open for the run; further ones (a repo with very many
    sub-folders) are opened from their nearest held ancestor for each use, so a run never
    holds more than ``capacity`` descriptors. Thread-safe. ``refresh`` forgets a folder that
    was removed meanwhile (``rm --force``), so the next use makes it again.
    """

    def __init__(self, root: Path | str, *, capacity: int = 64) -> None:
        self.root = Path(root)
        self.capacity = max(1, capacity)
        self._bases = (os.path.abspath(root), os.path.realpath(root))
        self._fds: dict[tuple[str, ...], int] = {}
        self._keys: dict[str, tuple[str, ...]] = {}
        self._retired: list[int] = []
        self._lock = threading.Lock()
        self._closed = False

    def __enter__(self) -> HeldFolders:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def closed(self) -> bool:
        """True once ``close`` was called."""
        return self._closed

    def close(self) -> None:
        """Close every held descriptor (idempotent); later ``held`` calls raise ``ValueError``."""
        with self._lock:
            self._closed = True
            fds, self._fds = [*self._fds.values(), *self._retired], {}
            self._retired = []
        for fd in fds:
            os.close(fd)

    def key(self, folder: Path | str) -> tuple[str, ...]:
        """``folder``'s components below the root; ``CacheError`` when it is not below it."""
        text = str(folder)
        parts = self._keys.get(text)
        if parts is None:
            parts = _parts(text, self._bases)
            if parts is None:
                raise _not_inside(folder, self.root)
            if len(self._keys) > 4096:
                self._keys.clear()
            self._keys[text] = parts
        return parts

    def held(self, folder: Path | str, *, create: bool = False) -> _Use:
        """``with folders.held(folder) as fd:`` an fd on ``folder`` for the block: the run's held
        one, or (past ``capacity``) one opened for the block. See ``open_folder`` for the errors."""
        return _Use(self, self.key(folder), create)

    def refresh(self, folder: Path | str) -> None:
        """Forget the held fds of ``folder`` and of everything below it (removed or replaced
        meanwhile): the next ``held`` reaches it from the root again. (The old fds stay open
        until ``close``: another thread may be using one right now.)"""
        parts = self.key(folder)
        with self._lock:
            if len(self._retired) > 4 * self.capacity:  # (kept open until ``close``: bounded)
                raise CacheError(f"folders under {self.root.joinpath(*parts)} keep disappearing while they are "
                                 "written", "is a `modelcache rm --force` or another tenant removing them? "
                                 "run the download again once it stopped")
            for k in [k for k in self._fds if k[:len(parts)] == parts]:
                self._retired.append(self._fds.pop(k))

    def _get(self, parts: tuple[str, ...], create: bool) -> tuple[int, bool]:
        """(fd, owned): owned when past ``capacity`` (the caller closes it)."""
        fd = self._fds.get(parts)  # (a held fd stays open until ``close``: no lock needed to find it)
        if fd is not None and not self._closed:
            return fd, False
        with self._lock:
            if self._closed:
                raise ValueError("HeldFolders used after close()")
            fd = self._fds.get(parts)
            if fd is not None:
                return fd, False
            if () not in self._fds:
                self._fds[()] = _open_root(self.root)
            i = len(parts)
            while parts[:i] not in self._fds:
                i -= 1
            base, owned, shown = self._fds[parts[:i]], False, self.root.joinpath(*parts[:i])
            for j in range(i, len(parts)):
                shown = shown / parts[j]
                try:
                    nfd = _open_child(base, parts[j], create, shown, self.root)
                finally:
                    if owned:
                        os.close(base)
                owned = len(self._fds) >= self.capacity
                if not owned:
                    self._fds[parts[:j + 1]] = nfd
                base = nfd
            return base, owned


class _Use:
    """The context manager of ``HeldFolders.held`` (a class: this runs several times per file)."""

    __slots__ = ("_folders", "_parts", "_create", "_fd", "_owned")

    def __init__(self, folders: HeldFolders, parts: tuple[str, ...], create: bool) -> None:
        self._folders, self._parts, self._create = folders, parts, create
        self._fd, self._owned = -1, False

    def __enter__(self) -> int:
        self._fd, self._owned = self._folders._get(self._parts, self._create)
        return self._fd

    def __exit__(self, *exc: object) -> None:
        if self._owned:
            os.close(self._fd)
            self._owned = False
