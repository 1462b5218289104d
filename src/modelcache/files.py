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
import json
import logging
import math
import os
import re
import secrets
import stat
from collections.abc import Iterator
from pathlib import Path

from .errors import CacheError

__all__ = [
    "SHARED_DIR_MODE",
    "CorruptState",
    "NotRegularFile",
    "atomic_symlink",
    "atomic_write_bytes",
    "confined_rmtree",
    "confined_unlink",
    "create_exclusive",
    "is_inside",
    "open_in_root",
    "open_regular",
    "read_bounded",
    "read_json_state",
    "read_state_or_none",
    "safe_iterdir",
    "shared_mkdir",
    "warn_corrupt",
    "write_new_file",
]

log = logging.getLogger("modelcache.state")

SHARED_DIR_MODE = 0o2775  # group-writable, new entries inherit the group (shared volumes, fsGroup)
STATE_MAX_BYTES = 1 << 20
STATE_MAX_DEPTH = 32
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)


class NotRegularFile(OSError):
    """A path where a regular file belongs holds a symlink, FIFO, device, socket or folder."""


class CorruptState(CacheError):
    """A state file exists but is not what modelcache writes there (junk, a FIFO, a link, …)."""

    code = "corrupt-state"

    def __init__(self, path: Path | str, why: str, hint: str = "") -> None:
        self.path = Path(path)
        self.why = why
        super().__init__(f"corrupt state file {path}: {why}",
                         hint or f"remove it (`rm -rf '{path}'`): modelcache rewrites it when needed")


_warned: set[str] = set()


def warn_corrupt(exc: CorruptState) -> None:
    """Log (once per file per process) that a state file was ignored, and how to fix it."""
    key = str(exc.path)
    if key in _warned:
        return
    if len(_warned) > 10_000:
        _warned.clear()
    _warned.add(key)
    log.warning("modelcache: warning: %s", exc)


# -- paths ------------------------------------------------------------------------------------------
def is_inside(path: Path | str, root: Path | str) -> bool:
    """True when the *real* path of ``path`` is ``root``'s real path or below it."""
    real_root = os.path.realpath(root)
    real = os.path.realpath(path)
    return real == real_root or real.startswith(real_root.rstrip(os.sep) + os.sep)


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


def safe_iterdir(folder: Path) -> Iterator[os.DirEntry[str]]:
    """Entries of ``folder`` (none if it is missing, not a folder, or a symlink)."""
    try:
        if stat.S_ISLNK(os.lstat(folder).st_mode):
            return iter(())
        with os.scandir(folder) as it:
            return iter(list(it))
    except OSError:
        return iter(())


# -- reads ------------------------------------------------------------------------------------------
def open_regular(path: Path | str, max_bytes: int | None = None, *, follow: bool = False) -> int:
    """An fd open for reading on ``path`` if it is a regular file (of at most ``max_bytes``).

    Never follows a final symlink unless ``follow`` (then the caller has checked where it
    leads), never blocks on a FIFO. Raises ``FileNotFoundError`` when missing and
    ``NotRegularFile`` for anything that is not a regular file or is too large.
    """
    flags = _READ_FLAGS & ~os.O_NOFOLLOW if follow else _READ_FLAGS
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise NotRegularFile(errno.ELOOP, "a symlink where a file belongs", str(path)) from None
        if exc.errno in (errno.ENXIO, errno.EISDIR, errno.EWOULDBLOCK):
            raise NotRegularFile(exc.errno, "not a regular file", str(path)) from None
        raise
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise NotRegularFile(errno.EINVAL, "not a regular file", str(path))
        if max_bytes is not None and st.st_size > max_bytes:
            raise NotRegularFile(errno.EFBIG, f"larger than {max_bytes} bytes", str(path))
        os.set_blocking(fd, True)
        return fd
    except BaseException:
        os.close(fd)
        raise


def open_in_root(path: Path | str, root: Path | str, max_bytes: int | None = None) -> int:
    """``open_regular`` on where ``path`` leads (a snapshot link, say), only if that is inside ``root``.

    Raises ``NotRegularFile`` for a link that leads out of ``root`` (it is never opened).
    """
    real = os.path.realpath(path)
    if not is_inside(real, root):
        raise NotRegularFile(errno.EXDEV, "leads outside the cache", str(path))
    return open_regular(real, max_bytes)


def read_bounded(path: Path | str, max_bytes: int = STATE_MAX_BYTES, *, follow: bool = False) -> bytes:
    """The bytes of the regular file at ``path`` (at most ``max_bytes``; see ``open_regular``)."""
    fd = open_regular(path, max_bytes, follow=follow)
    with os.fdopen(fd, "rb") as fh:
        data = fh.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise NotRegularFile(errno.EFBIG, f"larger than {max_bytes} bytes", str(path))
    return data


_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.S)
_BRACKETS = re.compile(r"[\[\]{}]")


def _too_deep(text: str, max_depth: int) -> bool:
    depth = 0
    for ch in _BRACKETS.findall(_STRING.sub("", text)):
        if ch in "[{":
            depth += 1
            if depth > max_depth:
                return True
        else:
            depth -= 1
    return False


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:20]} is out of range")
    return value


def _no_constant(name: str) -> object:
    raise ValueError(f"{name} is not a number modelcache writes")


def read_json_state(path: Path | str, *, max_bytes: int = STATE_MAX_BYTES, max_depth: int = STATE_MAX_DEPTH,
                    expect: type | tuple[type, ...] | None = dict, hint: str = "") -> object | None:
    """The JSON value in the state file ``path``; None when there is no such file.

    Raises ``CorruptState`` (naming the file and the fix) for anything modelcache would not
    have written: a symlink, FIFO or folder, more than ``max_bytes``, bytes that are not
    UTF-8, invalid JSON, ``NaN``/``Infinity``/``1e999``, nesting deeper than ``max_depth``, or
    a top-level value that is not an ``expect``. Never blocks, never recurses without bound.
    """
    try:
        raw = read_bounded(path, max_bytes)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except NotRegularFile as exc:
        raise CorruptState(path, exc.strerror or "not a regular file", hint) from None
    except OSError as exc:
        raise CorruptState(path, f"cannot read it ({exc.strerror or exc})", hint) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise CorruptState(path, "not UTF-8 text", hint) from None
    if _too_deep(text, max_depth):
        raise CorruptState(path, f"JSON nested deeper than {max_depth} levels", hint)
    try:
        value = json.loads(text, parse_float=_finite, parse_constant=_no_constant)
    except (ValueError, RecursionError) as exc:
        raise CorruptState(path, f"not valid JSON ({str(exc)[:80]})", hint) from None
    if expect is not None and not isinstance(value, expect):
        raise CorruptState(path, f"expected a JSON {_type_name(expect)}, found {type(value).__name__}", hint)
    return value


def _type_name(expect: type | tuple[type, ...]) -> str:
    names = {dict: "object", list: "array", str: "string", int: "number", float: "number"}
    types = expect if isinstance(expect, tuple) else (expect,)
    return " or ".join(names.get(t, t.__name__) for t in types)


def read_state_or_none(path: Path | str, **kw: object) -> object | None:
    """``read_json_state``, with a corrupt file warned about (once) and read as missing."""
    try:
        return read_json_state(path, **kw)  # type: ignore[arg-type]
    except CorruptState as exc:
        warn_corrupt(exc)
        return None


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
    ``root``, both folders must resolve inside it. A symlink planted at ``target`` is replaced,
    never written through.
    """
    shared_mkdir(target.parent, root)
    folder = tmp_dir if tmp_dir is not None else target.parent
    if tmp_dir is not None:
        shared_mkdir(tmp_dir, root)
    fd, tmp = create_exclusive(folder, f".{target.name}.", ".tmp", 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            if fsync:
                os.fsync(fh.fileno())
            os.fchmod(fh.fileno(), mode)
        try:
            os.replace(tmp, target)
        except (IsADirectoryError, NotADirectoryError, FileExistsError) as exc:
            raise CacheError(f"cannot write {target}: {exc.strerror} (a folder where a file belongs?)",
                             f"remove it (`rm -rf '{target}'`); modelcache writes it again") from None
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def atomic_symlink(link: Path, target: Path, tmp_dir: Path | None = None, *, root: Path | None = None) -> None:
    """Make ``link`` a *relative* symlink to ``target``, replacing any previous entry atomically.

    The temporary link is made in ``tmp_dir`` (same filesystem) when given, so a crash never
    leaves a stray entry inside a snapshot folder.
    """
    shared_mkdir(link.parent, root)
    rel = os.path.relpath(target, link.parent)
    if tmp_dir is not None:
        shared_mkdir(tmp_dir, root)
        tmp = tmp_dir / f"link.{secrets.token_hex(16)}.tmp"
    else:
        tmp = link.with_name(f".{link.name}.{secrets.token_hex(8)}.tmp")
    os.symlink(rel, tmp)
    try:
        os.replace(tmp, link)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


# -- deletes ----------------------------------------------------------------------------------------
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | getattr(os, "O_CLOEXEC", 0)


def _open_confined_dir(folder: Path | str, root: Path | str) -> int | None:
    """An fd on ``folder``, reached from ``root`` one component at a time with ``O_NOFOLLOW``:
    None when ``folder`` is not below ``root`` or any folder on the way is a symlink."""
    real_root = os.path.realpath(root)
    folder = os.path.abspath(folder)
    for base in (real_root, os.path.abspath(root)):
        if folder == base:
            rel = ""
            break
        if folder.startswith(base.rstrip(os.sep) + os.sep):
            rel = folder[len(base.rstrip(os.sep)) + 1:]
            break
    else:
        return None
    try:
        fd = os.open(real_root, _DIR_FLAGS)
    except OSError:
        return None
    for part in filter(None, rel.split(os.sep)):
        if part in (".", ".."):
            os.close(fd)
            return None
        try:
            nfd = os.open(part, _DIR_FLAGS | os.O_NOFOLLOW, dir_fd=fd)
        except OSError:
            os.close(fd)
            return None
        os.close(fd)
        fd = nfd
    return fd


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
