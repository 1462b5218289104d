"""Reading what a co-tenant may have planted: regular files only, bounded, never blocking.

Every state file is read through here (``files`` re-exports all of it): ``O_NOFOLLOW |
O_NONBLOCK``, then ``fstat`` must say a regular file of bounded size; JSON is checked for size,
nesting depth, finite numbers and the expected type before anyone looks at it. Anything else
is ``CorruptState``: a message naming the file, and a hint saying how to fix it.
"""

from __future__ import annotations

import errno
import json
import logging
import math
import os
import re
import stat
from pathlib import Path

from .errors import CacheError

__all__ = [
    "STATE_MAX_BYTES",
    "STATE_MAX_DEPTH",
    "CorruptState",
    "NotRegularFile",
    "is_inside",
    "open_in_root",
    "open_regular",
    "read_bounded",
    "read_json_state",
    "read_state_or_none",
    "warn_corrupt",
]

log = logging.getLogger("modelcache.state")

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


def is_inside(path: Path | str, root: Path | str) -> bool:
    """True when the *real* path of ``path`` is ``root``'s real path or below it."""
    real_root = os.path.realpath(root)
    real = os.path.realpath(path)
    return real == real_root or real.startswith(real_root.rstrip(os.sep) + os.sep)


# -- reads ------------------------------------------------------------------------------------------
def open_regular(path: Path | str, max_bytes: int | None = None, *, follow: bool = False,
                 dir_fd: int | None = None) -> int:
    """An fd open for reading on ``path`` if it is a regular file (of at most ``max_bytes``).

    Never follows a final symlink unless ``follow`` (then the caller has checked where it
    leads), never blocks on a FIFO. With ``dir_fd``, ``path`` is a name in that folder. Raises
    ``FileNotFoundError`` when missing and ``NotRegularFile`` for anything that is not a
    regular file or is too large.
    """
    flags = _READ_FLAGS & ~os.O_NOFOLLOW if follow else _READ_FLAGS
    try:
        fd = os.open(path, flags, dir_fd=dir_fd)
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


def read_bounded(path: Path | str, max_bytes: int = STATE_MAX_BYTES, *, follow: bool = False,
                 dir_fd: int | None = None) -> bytes:
    """The bytes of the regular file at ``path`` (at most ``max_bytes``; see ``open_regular``)."""
    fd = open_regular(path, max_bytes, follow=follow, dir_fd=dir_fd)
    try:
        chunks, have = [], 0
        while have <= max_bytes:  # (plain reads: no buffered file object, no isatty/lseek)
            piece = os.read(fd, min(1 << 16, max_bytes + 1 - have))
            if not piece:
                break
            chunks.append(piece)
            have += len(piece)
    finally:
        os.close(fd)
    data = b"".join(chunks)
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
                    expect: type | tuple[type, ...] | None = dict, hint: str = "",
                    dir_fd: int | None = None) -> object | None:
    """The JSON value in the state file ``path``; None when there is no such file.

    Raises ``CorruptState`` (naming the file and the fix) for anything modelcache would not
    have written: a symlink, FIFO or folder, more than ``max_bytes``, bytes that are not
    UTF-8, invalid JSON, ``NaN``/``Infinity``/``1e999``, nesting deeper than ``max_depth``, or
    a top-level value that is not an ``expect``. Never blocks, never recurses without bound.
    With ``dir_fd``, ``path`` is a name in that folder.
    """
    try:
        raw = read_bounded(path, max_bytes, dir_fd=dir_fd)
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
