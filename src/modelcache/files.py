"""Small file-system primitives every layer may use: atomic writes, shared folders, symlinks.

Nothing here knows the cache layout; ``cache/layout.py`` says *where*, this says *how*.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from pathlib import Path

__all__ = ["SHARED_DIR_MODE", "atomic_symlink", "atomic_write_bytes", "shared_mkdir"]


SHARED_DIR_MODE = 0o2775  # group-writable, new entries inherit the group (shared volumes, fsGroup)


def shared_mkdir(path: Path) -> None:
    """``mkdir -p`` whose new folders are group-writable, so every pod of the group can lock and lease."""
    missing = []
    p = path
    while not p.exists() and p != p.parent:
        missing.append(p)
        p = p.parent
    path.mkdir(parents=True, exist_ok=True)
    for d in missing:
        try:
            os.chmod(d, SHARED_DIR_MODE)
        except OSError:
            pass


def _tmp_sibling(target: Path) -> Path:
    return target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.tmp")


def atomic_write_bytes(target: Path, data: bytes, mode: int = 0o664, fsync: bool = True) -> None:
    """Write to a temp file next to ``target``, fsync, then ``os.replace``: readers see old or new."""
    shared_mkdir(target.parent)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            if fsync:
                os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def atomic_symlink(link: Path, target: Path, tmp_dir: Path | None = None) -> None:
    """Make ``link`` a *relative* symlink to ``target``, replacing any previous entry atomically.

    The temporary link is made in ``tmp_dir`` (same filesystem) when given, so a crash never
    leaves a stray entry inside a snapshot folder.
    """
    link.parent.mkdir(parents=True, exist_ok=True)
    rel = os.path.relpath(target, link.parent)
    if tmp_dir is not None:
        tmp_dir.mkdir(parents=True, exist_ok=True)
        tmp = tmp_dir / f"link.{uuid.uuid4().hex}.tmp"
    else:
        tmp = _tmp_sibling(link)
    os.symlink(rel, tmp)
    try:
        os.replace(tmp, link)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
