"""The few facts ``doctor`` reads from the machine: who we are, who owns a folder, the mount
table, free space, and whether a file can really be written. All I/O of the local checks."""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .mounts import Mount, mount_for, parse_mounts

__all__ = ["Owner", "User", "current_user", "disk_free", "find_mount", "is_read_only_mount", "nearest_existing",
           "owner_of", "write_probe"]


@dataclass(frozen=True)
class User:
    """Who we run as: effective uid, gid and supplementary groups."""

    uid: int
    gid: int
    groups: frozenset[int]

    def in_group(self, gid: int) -> bool:
        """True when ``gid`` is our primary or a supplementary group."""
        return gid == self.gid or gid in self.groups


@dataclass(frozen=True)
class Owner:
    """Who owns a path and its permission bits."""

    path: str
    uid: int
    gid: int
    mode: int
    """Permission bits incl. setgid (``stat.S_IMODE``)."""
    is_dir: bool = True


def current_user() -> User:
    """The effective uid/gid and supplementary groups of this process (no groups when unreadable)."""
    try:
        groups = frozenset(os.getgroups())
    except OSError:
        groups = frozenset()
    return User(os.geteuid(), os.getegid(), groups)


def owner_of(path: Path) -> Owner | None:
    """Owner, group and mode of ``path`` (following symlinks), or None when it cannot be stat'ed."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return Owner(str(path), st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode), stat.S_ISDIR(st.st_mode))


def nearest_existing(path: Path) -> Path:
    """``path`` itself, or its closest ancestor that exists."""
    p = path
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def find_mount(path: Path, mounts_file: str = "/proc/mounts") -> Mount | None:
    """The mount holding ``path`` (or its nearest existing parent), from the mount table."""
    try:
        text = Path(mounts_file).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    return mount_for(os.path.realpath(nearest_existing(path)), parse_mounts(text))


def is_read_only_mount(path: Path) -> bool:
    """True when the filesystem holding ``path`` (or its nearest existing ancestor) is mounted read-only.

    False when that cannot be told.
    """
    try:
        return bool(os.statvfs(nearest_existing(path)).f_flag & os.ST_RDONLY)
    except (OSError, AttributeError):
        return False


def disk_free(path: Path) -> int | None:
    """Free bytes on the filesystem holding ``path`` (or its nearest existing ancestor); None when unreadable."""
    try:
        return shutil.disk_usage(nearest_existing(path)).free
    except OSError:
        return None


def write_probe(folder: Path) -> OSError | None:
    """Create, write, fsync and remove a small hidden file in ``folder``; the error if any step fails."""
    try:
        fd, name = tempfile.mkstemp(dir=folder, prefix=".modelcache-doctor-", suffix=".tmp")
    except OSError as exc:
        return exc
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(b"modelcache doctor write test\n")
            fh.flush()
            os.fsync(fh.fileno())
    except OSError as exc:
        return exc
    finally:
        try:
            os.unlink(name)
        except OSError:
            pass
    return None
