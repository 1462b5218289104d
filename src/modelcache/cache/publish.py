"""Making verified bytes visible: blob → ``blobs/<etag>``, link → ``snapshots/<commit>/<path>``.

The order is the whole point: a blob is renamed into place only after it is verified, a
snapshot link is made only to a blob that exists, the record is written before any link, and
``refs/<rev>`` last, once the snapshot folder exists (HF's scanner rejects a ref to nothing).
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

from ..errors import CacheError
from .layout import RepoLayout
from ..files import atomic_symlink, shared_mkdir
from ..protocol import FileEntry
from .records import TreeRecord, write_record

__all__ = ["ensure_repo_dirs", "install_blob", "install_blob_fd", "link_file", "publish_record", "copy_into_blob"]

FILE_MODE = 0o644 | 0o040  # group-readable for shared volumes


def ensure_repo_dirs(layout: RepoLayout) -> None:
    try:
        for d in (layout.blobs, layout.snapshots, layout.refs, layout.state, layout.locks):
            shared_mkdir(d)
        tag = layout.cache_dir / "CACHEDIR.TAG"
        if not tag.exists():
            tag.write_text("Signature: 8a477f597d28d172789f06886806bc55\n# This directory is a Hugging Face hub cache.\n")
    except PermissionError as exc:
        raise CacheError(
            f"cannot write to the cache at {layout.cache_dir}: {exc.strerror}",
            "give the user write access, or point --cache-dir / HF_HUB_CACHE at a writable directory",
        ) from None
    except OSError as exc:
        raise CacheError(
            f"cannot create the cache folders at {layout.folder}: {exc.strerror}",
            "check the path and free space, or choose another --cache-dir",
        ) from None


def install_blob(layout: RepoLayout, etag: str, verified_tmp: Path) -> Path:
    """Rename an already verified file into ``blobs/<etag>`` (atomic; idempotent)."""
    target = layout.blob(etag)
    try:
        os.chmod(verified_tmp, FILE_MODE)
        os.replace(verified_tmp, target)
    except FileNotFoundError:
        # Another writer of the same partial (a lock taken over from a slow, not dead, holder)
        # installed it first: blobs are content-addressed and verified, so theirs is ours.
        if not target.is_file():
            raise
    return target


def install_blob_fd(layout: RepoLayout, etag: str, fd: int, private: Path) -> Path | None:
    """Make the verified inode open at ``fd`` the blob ``blobs/<etag>`` (atomic; idempotent).

    ``private`` is the writer's own name for that inode: it is checked to still be that inode
    and renamed over the blob. What gets installed is always the inode this writer verified,
    never whatever another writer may meanwhile have put under the partial's shared name.
    Returns None (nothing installed) when the private name is not ours any more.
    """
    target = layout.blob(etag)
    try:
        os.fchmod(fd, FILE_MODE)
    except OSError:
        pass
    if not _same_inode(private, fd):
        return None
    os.replace(private, target)
    return target


def _same_inode(path: Path, fd: int) -> bool:
    try:
        a, b = os.lstat(path), os.fstat(fd)
    except OSError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def copy_into_blob(layout: RepoLayout, etag: str, source: Path) -> Path:
    """Copy a local file into ``blobs/<etag>`` through a temp file (used by ``import``)."""
    target = layout.blob(etag)
    if target.exists() and target.stat().st_size == source.stat().st_size:
        return target
    tmp = layout.blobs / f"{etag}.{uuid.uuid4().hex[:8]}.import.incomplete"
    try:
        shutil.copyfile(source, tmp)
        return install_blob(layout, etag, tmp)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def link_file(layout: RepoLayout, commit: str, entry: FileEntry) -> Path:
    link = layout.snapshot_file(commit, entry.path)
    atomic_symlink(link, layout.blob(entry.etag), tmp_dir=layout.state / "tmp")
    return link


def publish_record(layout: RepoLayout, record: TreeRecord) -> None:
    layout.snapshot(record.commit).mkdir(parents=True, exist_ok=True)
    write_record(layout.tree_record(record.commit), record)
