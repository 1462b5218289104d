"""Is a cached file what an engine can load? Safe ``stat`` and cheap parsing, for ``check``.

A snapshot entry is trusted only when it is a regular file, or a symlink into the repo's own
``blobs/`` whose target is a regular file (a co-tenant's link to ``/etc/…``, a FIFO or a device
is a problem, never opened). Parsing (JSON; tiktoken's ``<base64> <rank>`` lines) is cached on
(file, size, mtime) — in process, and as "ok" verdicts per blob beside the repo's own state — so a
polling init container, ``ls`` or a later ``check`` process parses each blob once.
"""

from __future__ import annotations

import json
import os
import posixpath
import re
import stat
from dataclasses import dataclass
from pathlib import Path

from ..errors import CacheError
from ..files import atomic_write_bytes

__all__ = ["MAX_PARSE_BYTES", "FileStat", "SnapshotReader", "parse_problem", "read_regular"]

MAX_PARSE_BYTES = 64 * 1024 * 1024
"""Bigger files are not parsed (a note says so): a check stays in milliseconds."""

_TIKTOKEN_LINE = re.compile(rb"[A-Za-z0-9+/]*={0,2} [0-9]+")
_PARSED: dict[tuple[str, int, int], str | None] = {}
_PARSED_MAX = 4096


@dataclass(frozen=True)
class FileStat:
    """What a snapshot entry is: ``size`` when usable, else ``problem`` (None and None: missing)."""

    size: int | None
    problem: str | None
    real: str | None = None
    mtime_ns: int = 0
    blob: str | None = None
    """The blob's name when the entry links into ``blobs/`` (its content hash)."""


class SnapshotReader:
    """``stat`` files of one snapshot without following anything out of the repo folder."""

    def __init__(self, snapshot: str, blobs: str) -> None:
        self.snapshot = snapshot
        self.blobs = blobs.rstrip("/") + "/"
        self._dirs: dict[str, str | None] = {"": None}
        self._top: dict[str, os.DirEntry[str]] | None = None

    def _dir_problem(self, folder: str) -> str | None:
        """None when every folder from the snapshot down to ``folder`` is a real directory."""
        if folder in self._dirs:
            return self._dirs[folder]
        parent_problem = self._dir_problem(posixpath.dirname(folder))
        if parent_problem is not None:
            self._dirs[folder] = parent_problem
            return parent_problem
        try:
            st = os.lstat(posixpath.join(self.snapshot, folder))
            problem = None if stat.S_ISDIR(st.st_mode) else f"folder {folder}/ is not a directory (a link?)"
        except FileNotFoundError:
            problem = ""  # missing: files below it are missing, not broken
        except OSError as exc:
            problem = f"folder {folder}/ cannot be read ({exc.strerror})"
        self._dirs[folder] = problem
        return problem

    def _blob(self, link: str, target: str, depth: int) -> FileStat:
        """The blob a snapshot link points at, if it is one: ``../`` × (depth + 2) + ``blobs/<name>``."""
        prefix = "../" * (depth + 2) + "blobs/"
        name = target[len(prefix):]
        if not target.startswith(prefix) or not name or "/" in name or name in (".", ".."):
            return FileStat(None, f"links outside the repo's blobs ({target})")
        real = self.blobs + name
        st = os.lstat(real)
        if not stat.S_ISREG(st.st_mode):
            return FileStat(None, "not a regular file")
        return FileStat(st.st_size, None, real, st.st_mtime_ns, name)

    def stat(self, path: str) -> FileStat:
        """Size of ``path`` in the snapshot, following at most one link, and only into ``blobs/``.

        Top-level files cost one ``readlink`` and one ``lstat`` (the folder is listed once).
        """
        try:
            if "/" not in path:
                if self._top is None:
                    with os.scandir(self.snapshot) as it:
                        self._top = {e.name: e for e in it}
                entry = self._top.get(path)
                if entry is None:
                    return FileStat(None, None)
                if entry.is_symlink():
                    return self._blob(path, os.readlink(entry.path), 0)
                st = entry.stat(follow_symlinks=False)
            else:
                folder = posixpath.dirname(path)
                problem = self._dir_problem(folder)
                if problem == "":
                    return FileStat(None, None)
                if problem is not None:
                    return FileStat(None, problem)
                full = posixpath.join(self.snapshot, path)
                st = os.lstat(full)
                if stat.S_ISLNK(st.st_mode):
                    return self._blob(path, os.readlink(full), path.count("/"))
        except FileNotFoundError:
            return FileStat(None, None)
        except OSError as exc:
            return FileStat(None, f"cannot be read ({exc.strerror})")
        if not stat.S_ISREG(st.st_mode):
            return FileStat(None, "not a regular file")
        return FileStat(st.st_size, None, posixpath.join(self.snapshot, path), st.st_mtime_ns)


def read_regular(real: str, size: int) -> bytes:
    """Up to ``size`` bytes of a regular file, never blocking on a FIFO or following a final link."""
    fd = os.open(real, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0))
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError("not a regular file")
        chunks, left = [], size
        while left > 0:
            chunk = os.read(fd, min(left, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def _judge(path: str, data: bytes) -> tuple[str | None, object]:
    if path.endswith(".json"):
        try:
            return None, json.loads(data)
        except (ValueError, RecursionError):
            return "not valid JSON", None
    if path.endswith((".tiktoken", "tiktoken.model")):
        lines = data.splitlines()
        if not any(lines):
            return "an empty tiktoken file", None
        for n, line in enumerate(lines, 1):
            if line and not _TIKTOKEN_LINE.fullmatch(line):
                return f"not in tiktoken format (line {n})", None
        return None, None
    return None, None


def _read(real: str, size: int) -> bytes:
    return read_regular(real, size)


def _stored_ok(verdicts: str, fs: FileStat) -> bool:
    try:
        fd = os.open(posixpath.join(verdicts, fs.blob or ""), os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return False
    try:
        return stat.S_ISREG(os.fstat(fd).st_mode) and os.read(fd, 64) == f"{fs.size} {fs.mtime_ns} ok".encode()
    except OSError:
        return False
    finally:
        os.close(fd)


def _store_ok(verdicts: str, fs: FileStat, root: str | None) -> None:
    if root is None or not fs.blob:
        return  # never write state whose folder we cannot confine to the cache
    try:  # best effort: an engine's read-only mount stores nothing
        atomic_write_bytes(Path(verdicts) / fs.blob, f"{fs.size} {fs.mtime_ns} ok".encode(), fsync=False,
                           root=Path(root))
    except (OSError, CacheError):  # read-only, or a planted link/FIFO where our state goes: store nothing
        pass


def parse_problem(path: str, fs: FileStat, want_value: bool = False,
                  verdicts: str | None = None, root: str | None = None) -> tuple[str | None, object]:
    """(problem, parsed JSON when ``want_value``) for a present file; JSON and tiktoken files only.

    Verdicts are cached on (real path, size, mtime) in process, and — for blobs, whose name is
    their content hash — as "ok" files in ``verdicts`` (``<repo>/.modelcache/parsed/``), so a
    ``check`` process after the download's own does not parse a 10 MB ``tokenizer.json`` again.
    Values are not cached (the caller keeps what it needs). Verdicts are stored only with
    ``root`` (the cache directory), and only in a folder that resolves inside it.
    """
    if fs.real is None or fs.size is None:
        return None, None
    if not path.endswith((".json", ".tiktoken", "tiktoken.model")):
        return None, None
    if fs.size > MAX_PARSE_BYTES:
        return None, None
    key = (fs.real, fs.size, fs.mtime_ns)
    if not want_value and key in _PARSED:
        return _PARSED[key], None
    stored = verdicts is not None and fs.blob is not None
    if not want_value and stored and _stored_ok(verdicts, fs):  # type: ignore[arg-type]
        _PARSED[key] = None
        return None, None
    try:
        data = _read(fs.real, fs.size)
    except OSError as exc:
        return f"cannot be read ({getattr(exc, 'strerror', None) or exc})", None
    problem, value = _judge(path, data)
    if len(_PARSED) >= _PARSED_MAX:
        _PARSED.clear()
    _PARSED[key] = problem
    if problem is None and stored:
        _store_ok(verdicts, fs, root)  # type: ignore[arg-type]
    return problem, value
