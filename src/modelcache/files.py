"""Small file-system primitives every layer may use: safe reads, atomic writes, confined deletes.

Nothing here knows the cache layout; ``cache/layout.py`` says *where*, this says *how*.

The cache may sit on a volume that other tenants can write (a group-writable PVC), and
modelcache may run as root. So every primitive here assumes an adversary may have planted a
symlink, a FIFO, a directory or junk at any path:

- reads open with ``O_NOFOLLOW | O_NONBLOCK`` and accept only a regular file of bounded size
  (``open_regular``, ``read_bounded``, ``read_json_state``): a FIFO never blocks, a link
  never leads out, a huge or deeply nested file never exhausts memory or the stack;
- writes create their temp file with ``O_EXCL | O_NOFOLLOW`` under an unpredictable name and
  refuse a target folder that resolves outside ``root`` (``atomic_write_bytes``,
  ``create_exclusive``, ``write_new_file``);
- deletes never follow a link: ``unlink`` of a link removes the link, folders are walked
  with ``os.fwalk`` (no links followed) and nothing is removed unless its real path lies
  inside ``root`` (``confined_unlink``, ``confined_rmtree``).
"""

from __future__ import annotations

import errno
import logging
import os
import secrets
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ._safe_read import (
    STATE_MAX_BYTES,
    STATE_MAX_DEPTH,
    CorruptState,
    NotRegularFile,
    is_inside,
    open_in_root,
    open_regular,
    read_bounded,
    read_json_state,
    read_state_or_none,
    warn_corrupt,
)
from .diskwrite import write_all
from .errors import CacheError
from .folders import SHARED_DIR_MODE, HeldFolders, open_folder

__all__ = [
    "SHARED_DIR_MODE",
    "STATE_MAX_BYTES",
    "STATE_MAX_DEPTH",
    "CorruptState",
    "HeldFolders",
    "NotRegularFile",
    "atomic_write_bytes",
    "confined_folder",
    "confined_rmtree",
    "confined_unlink",
    "create_exclusive",
    "is_inside",
    "open_folder",
    "open_in_root",
    "open_regular",
    "read_bounded",
    "read_json_state",
    "read_state_or_none",
    "replace_bytes_at",
    "safe_iterdir",
    "shared_mkdir",
    "symlink_at",
    "warn_corrupt",
    "write_new_file",
]
log = logging.getLogger("modelcache.state")


def _require_inside(folder: Path, root: Path | None, what: str) -> None:
    if root is not None and not is_inside(folder, root):
        raise CacheError(f"refusing to {what} {folder}: it resolves outside the cache at {root} (a planted symlink?)",
                         f"remove the link `{_first_link(folder, root)}` from the cache")


def _first_link(path: Path, root: Path) -> Path:
    p = Path(path)
    chain = [p, *p.parents]
    for q in reversed(chain):
        if len(q.parts) > len(Path(root).parts) and q.is_symlink():
            return q
    return p


def safe_iterdir(folder: Path, *, follow: bool = False) -> Iterator[os.DirEntry[str]]:
    """Entries of ``folder`` (none if it is missing, not a folder, or — unless ``follow``, for a
    cache root the user chose — a symlink)."""
    try:
        if not follow and stat.S_ISLNK(os.lstat(folder).st_mode):
            return iter(())
        with os.scandir(folder) as it:
            return iter(list(it))
    except OSError:
        return iter(())


# -- writes -----------------------------------------------------------------------------------------
def shared_mkdir(path: Path, root: Path | None = None) -> None:
    """``mkdir -p`` whose new folders are group-writable, so every pod of the group can lock and lease.

    With ``root``: refuse (``CacheError``) when ``path`` resolves outside it.
    """
    missing = []
    p = path
    while not os.path.lexists(p) and p != p.parent:
        missing.append(p)
        p = p.parent
    if root is not None:
        _require_inside(p, root, "create folders in")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        bad = next((q for q in [path, *path.parents] if os.path.lexists(q) and not os.path.isdir(q)), path)
        raise CacheError(f"{bad} is not a folder (a file, FIFO or dangling link where a folder belongs)",
                         f"remove it (`rm '{bad}'`); modelcache makes the folder again") from None
    for d in missing:
        try:
            os.chmod(d, SHARED_DIR_MODE, follow_symlinks=False)
        except (OSError, NotImplementedError):
            pass
    if root is not None:
        _require_inside(path, root, "create folders in")


def create_exclusive(folder: Path, prefix: str, suffix: str = ".tmp", mode: int = 0o600) -> tuple[int, Path]:
    """A new file in ``folder`` with an unpredictable name, ``O_CREAT|O_EXCL|O_NOFOLLOW``: (fd, path)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
    for _ in range(100):
        tmp = folder / f"{prefix}{secrets.token_hex(8)}{suffix}"
        try:
            return os.open(tmp, flags, mode), tmp
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "no free temp name", str(folder))


def write_new_file(path: Path, data: bytes, mode: int = 0o644) -> bool:
    """Create ``path`` with ``data`` only if nothing (not even a dangling link) is there; True if written."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0), mode)
    except FileExistsError:
        return False
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    return True


def atomic_write_bytes(target: Path, data: bytes, mode: int = 0o664, fsync: bool = True, *,
                       root: Path | None = None, tmp_dir: Path | None = None) -> None:
    """Write to a temp file, fsync, then ``os.replace``: readers see old or new.

    The temp file is created ``O_EXCL|O_NOFOLLOW`` with an unpredictable name in ``tmp_dir``
    (same filesystem; where HF's scanner does not look) or else next to ``target``. With
    ``root``, both folders must be real folders inside it, and are held by fds from the check
    to the rename (``confined_folder``): one swapped for a link meanwhile gets nothing. A
    symlink planted at ``target`` is replaced, never written through.
    """
    shared_mkdir(target.parent, root)
    if tmp_dir is not None:
        shared_mkdir(tmp_dir, root)
    if root is None:
        _write_and_replace(target, target, data, mode, fsync, tmp_dir if tmp_dir is not None else target.parent)
        return
    with confined_folder(target.parent, root) as folder:
        if tmp_dir is None:
            _write_and_replace(folder / target.name, target, data, mode, fsync, folder)
        else:
            with confined_folder(tmp_dir, root) as tmp_folder:
                _write_and_replace(folder / target.name, target, data, mode, fsync, tmp_folder)


def _write_and_replace(dest: Path, shown: Path, data: bytes, mode: int, fsync: bool, tmp_folder: Path) -> None:
    fd, tmp = create_exclusive(tmp_folder, f".{shown.name}.", ".tmp", 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            if fsync:
                os.fsync(fh.fileno())
            os.fchmod(fh.fileno(), mode)
        try:
            os.replace(tmp, dest)
        except (IsADirectoryError, NotADirectoryError, FileExistsError) as exc:
            raise CacheError(f"cannot write {shown}: {exc.strerror} (a folder where a file belongs?)",
                             f"remove it (`rm -rf '{shown}'`); modelcache writes it again") from None
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def create_exclusive_at(dir_fd: int, prefix: str, suffix: str, mode: int = 0o600, *,
                        shown: Path | str | None = None) -> tuple[int, str]:
    """A new file ``prefix<random>suffix`` in the folder of ``dir_fd`` (``O_CREAT|O_EXCL|
    O_NOFOLLOW``, an unpredictable name): (fd open for writing, its name in that folder)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
    for _ in range(100):
        tmp = f"{prefix}{secrets.token_hex(8)}{suffix}"
        try:
            return os.open(tmp, flags, mode, dir_fd=dir_fd), tmp
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "no free temp name", str(shown or prefix))


def replace_bytes_at(dir_fd: int, name: str, data: bytes, mode: int = 0o664, fsync: bool = True, *,
                     shown: Path | str | None = None) -> None:
    """``atomic_write_bytes`` relative to a held folder (``folders.HeldFolders``): a temp file
    ``O_CREAT|O_EXCL|O_NOFOLLOW`` under an unpredictable name in the folder of ``dir_fd``,
    written, optionally fsynced, then renamed over ``name`` there. Nothing is reached by path.
    """
    fd, tmp = create_exclusive_at(dir_fd, f".{name}.", ".tmp", shown=shown or name)
    try:
        try:
            write_all(fd, data)
            if fsync:
                os.fsync(fd)
            os.fchmod(fd, mode)
        finally:
            os.close(fd)
        try:
            os.replace(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        except (IsADirectoryError, NotADirectoryError, FileExistsError) as exc:
            raise CacheError(f"cannot write {shown or name}: {exc.strerror} (a folder where a file belongs?)",
                             f"remove it (`rm -rf '{shown or name}'`); modelcache writes it again") from None
    except BaseException:
        try:
            os.unlink(tmp, dir_fd=dir_fd)
        except FileNotFoundError:
            pass
        raise


def symlink_at(rel: str, dir_fd: int, name: str, tmp_dir_fd: int) -> None:
    """Make ``name`` in the folder of ``dir_fd`` a symlink to ``rel``; both folders are held by
    fd (``HeldFolders``): nothing is reached by path.

    When nothing is at ``name``, the link is made right there (``symlinkat`` is atomic and never
    follows what it finds: an entry that appeared meanwhile makes it fail, not write through).
    Otherwise (a link to the same place is left as it is) any previous entry is replaced
    atomically: the link is made under an unpredictable name in the folder of ``tmp_dir_fd``
    (same filesystem; where HF's scanner does not look, so a crash never leaves a stray entry
    in a snapshot), then renamed over it.
    """
    try:
        os.symlink(rel, name, dir_fd=dir_fd)
        return
    except FileExistsError:
        try:
            if os.readlink(name, dir_fd=dir_fd) == rel:
                return
        except OSError:
            pass  # not a link (a file, a folder, a FIFO): replaced below (or refused, for a folder)
    tmp = f"link.{secrets.token_hex(16)}.tmp"
    os.symlink(rel, tmp, dir_fd=tmp_dir_fd)
    try:
        os.replace(tmp, name, src_dir_fd=tmp_dir_fd, dst_dir_fd=dir_fd)
    except BaseException:
        try:
            os.unlink(tmp, dir_fd=tmp_dir_fd)
        except FileNotFoundError:
            pass
        raise


# -- deletes ----------------------------------------------------------------------------------------
def _open_confined_dir(folder: Path | str, root: Path | str) -> int | None:
    """An fd on ``folder``, reached from ``root`` one component at a time with ``O_NOFOLLOW``
    (``folders.open_folder``): None when ``folder`` is not below ``root`` or any folder on the
    way is a symlink or missing."""
    try:
        return open_folder(folder, root)
    except (CacheError, OSError):
        return None


@contextmanager
def confined_folder(folder: Path, root: Path) -> Iterator[Path]:
    """A name for ``folder`` that a co-tenant cannot redirect while it is used.

    ``folder`` is opened from ``root`` one component at a time without following links, and
    ``/proc/self/fd/<fd>/`` names *that* folder until the block ends: swapping ``folder`` (or a
    folder above it) for a link after this check changes nothing. ``CacheError`` when it is not
    a real folder inside ``root``. Without ``/proc``, the checked path itself (best effort).
    """
    fd = _open_confined_dir(folder, root)
    if fd is None:
        raise CacheError(f"refusing to write into {folder}: it is not a folder inside the cache at {root}, or a "
                         "folder on the way is a symlink (planted?)", f"remove the link `{_first_link(folder, root)}`")
    try:
        proc = Path(f"/proc/self/fd/{fd}")
        yield proc if os.path.isdir(proc) else Path(folder)
    finally:
        os.close(fd)


def _refuse(path: Path | str, root: Path | str) -> None:
    if os.path.lexists(path):
        log.warning("modelcache: warning: not deleting %s: it is not inside the cache at %s, or a folder on the "
                    "way is a symlink (planted? remove the link)", path, root)


def confined_unlink(path: Path | str, root: Path | str) -> bool:
    """Remove the file or link at ``path`` (a link itself, never its target); True if removed.

    The folder holding it is reached from ``root`` without following any link; refused (False,
    logged) when that fails, and a folder at ``path`` is never removed.
    """
    path = Path(path)
    fd = _open_confined_dir(path.parent, root)
    if fd is None:
        _refuse(path, root)
        return False
    try:
        if stat.S_ISDIR(os.lstat(path.name, dir_fd=fd).st_mode):
            return False
        os.unlink(path.name, dir_fd=fd)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


def confined_rmtree(path: Path | str, root: Path | str) -> None:
    """``rm -rf path`` that never leaves ``root``: a link is unlinked (not followed), a folder
    is emptied with ``os.fwalk`` (no links followed, every unlink relative to a folder fd)."""
    path = Path(path)
    parent = _open_confined_dir(path.parent, root)
    if parent is None:
        _refuse(path, root)
        return
    try:
        try:
            st = os.lstat(path.name, dir_fd=parent)
        except OSError:
            return
        if not stat.S_ISDIR(st.st_mode):
            try:
                os.unlink(path.name, dir_fd=parent)
            except OSError:
                pass
            return
        for _top, dirs, files, dfd in os.fwalk(path.name, topdown=False, follow_symlinks=False, dir_fd=parent):
            for name in files:
                try:
                    os.unlink(name, dir_fd=dfd)
                except OSError:
                    pass
            for name in dirs:
                try:
                    if stat.S_ISLNK(os.lstat(name, dir_fd=dfd).st_mode):
                        os.unlink(name, dir_fd=dfd)
                    else:
                        os.rmdir(name, dir_fd=dfd)
                except OSError:
                    pass
        try:
            os.rmdir(path.name, dir_fd=parent)
        except OSError:
            pass
    finally:
        os.close(parent)
