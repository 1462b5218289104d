"""Making verified bytes visible: blob → ``blobs/<etag>``, link → ``snapshots/<commit>/<path>``.

The order is the whole point: a blob is renamed into place only after it is verified, a
snapshot link is made only to a blob that exists, the record is written before any link, and
``refs/<rev>`` last, once the snapshot folder exists (HF's scanner rejects a ref to nothing).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from ..diskwrite import write_all
from ..errors import CacheError
from .layout import RepoLayout
from ..files import (
    HeldFolders,
    NotRegularFile,
    confined_folder,
    create_exclusive,
    create_exclusive_at,
    open_regular,
    shared_mkdir,
    symlink_at,
    write_new_file,
)
from ..protocol import FileEntry
from .records import TreeRecord, write_record

__all__ = ["copy_into_blob", "ensure_repo_dirs", "install_blob", "install_blob_bytes", "install_blobs_bytes", "install_blob_fd", "link_file",
           "new_blob_temp", "publish_record"]

FILE_MODE = 0o644 | 0o040  # group-readable for shared volumes
CACHEDIR_TAG = b"Signature: 8a477f597d28d172789f06886806bc55\n# This directory is a Hugging Face hub cache.\n"


def ensure_repo_dirs(layout: RepoLayout) -> None:
    """Create the cache root and the repo's folders (group-writable) and ``CACHEDIR.TAG``; idempotent.

    Raises ``CacheError`` when they cannot be created (permissions, disk full, bad path).
    """
    try:
        shared_mkdir(layout.cache_dir)
        for d in (layout.blobs, layout.snapshots, layout.refs, layout.state, layout.locks):
            shared_mkdir(d, layout.cache_dir)
        # O_EXCL|O_NOFOLLOW: a planted (even dangling) link there is left alone, never written through
        write_new_file(layout.cache_dir / "CACHEDIR.TAG", CACHEDIR_TAG)
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
    """Rename an already verified file into ``blobs/<etag>`` (atomic; idempotent).

    Both names are taken in ``blobs/`` as reached from the cache root without following links
    (``confined_folder``): a ``blobs/`` swapped for a link is refused (``CacheError``)."""
    target = layout.blob(etag)
    if verified_tmp.parent != layout.blobs:
        return _install_blob(target, verified_tmp, verified_tmp)
    with confined_folder(layout.blobs, layout.cache_dir) as folder:
        _install_blob(folder / target.name, folder / verified_tmp.name, verified_tmp)
    return target


def _install_blob(target: Path, verified_tmp: Path, shown: Path) -> Path:
    try:
        # never chmod or rename through a link planted at the temp's name: check what it is by fd
        fd = open_regular(verified_tmp)
    except FileNotFoundError:
        # Another writer of the same partial (a lock taken over from a slow, not dead, holder)
        # installed it first: blobs are content-addressed and verified, so theirs is ours.
        if target.is_file() and not target.is_symlink():
            return target
        raise
    except NotRegularFile:
        raise CacheError(f"{shown} is not a regular file (a link or FIFO planted there?)",
                         f"remove it (`rm -f '{shown}'`) and download again") from None
    try:
        os.fchmod(fd, FILE_MODE)
        ino = os.fstat(fd)
        try:
            os.replace(verified_tmp, target)
        except FileNotFoundError:
            if not (target.is_file() and not target.is_symlink()):
                raise
            return target
        st = os.lstat(target)
        if (st.st_ino, st.st_dev) != (ino.st_ino, ino.st_dev) and not stat.S_ISREG(st.st_mode):
            os.unlink(target)  # swapped for something else between the check and the rename
            raise CacheError(f"{shown} was replaced while it was installed (another tenant?)",
                             "download again; check who else writes this cache")
    finally:
        os.close(fd)
    return target


def install_blob_fd(layout: RepoLayout, etag: str, fd: int, private: Path,
                    folders: HeldFolders | None = None) -> Path | None:
    """Make the verified inode open at ``fd`` the blob ``blobs/<etag>`` (atomic; idempotent).

    ``private`` is the writer's own name for that inode (in ``blobs/``): it is checked to still
    be that inode and renamed over the blob. What gets installed is always the inode this
    writer verified, never whatever another writer may meanwhile have put under the partial's
    shared name. Both names are reached through ``blobs/`` held by fd (the run's ``folders``,
    or opened from the cache root for this call). Returns None (nothing installed) when the
    private name is not ours any more.
    """
    target = layout.blob(etag)
    if folders is None:
        with HeldFolders(layout.cache_dir) as own:
            return install_blob_fd(layout, etag, fd, private, own)
    st = os.fstat(fd)
    if stat.S_IMODE(st.st_mode) != FILE_MODE:
        try:
            os.fchmod(fd, FILE_MODE)
        except OSError:
            pass
    with folders.held(layout.blobs) as blobs:
        try:
            mine = os.lstat(private.name, dir_fd=blobs)
        except OSError:
            return None
        if (mine.st_dev, mine.st_ino) != (st.st_dev, st.st_ino):
            return None
        os.replace(private.name, target.name, src_dir_fd=blobs, dst_dir_fd=blobs)
    return target


def install_blob_bytes(layout: RepoLayout, etag: str, data: bytes, folders: HeldFolders | None = None) -> Path:
    """Write *verified* bytes as ``blobs/<etag>`` (``install_blobs_bytes`` for one blob)."""
    install_blobs_bytes(layout, [(etag, data)], folders)
    return layout.blob(etag)


def install_blobs_bytes(layout: RepoLayout, items: list[tuple[str, bytes]], folders: HeldFolders | None = None) -> None:
    """Write *verified* bytes as their blobs ``blobs/<etag>``: each through a private temp file
    (``O_EXCL|O_NOFOLLOW``, unpredictable name) in ``blobs/`` held by fd (the run's ``folders``, or
    opened from the cache root for this call); all written first, then each fsynced, then each
    renamed into place — one pass of syncs for the batch (measured: 500 x 64 KiB, 4 threads,
    batches of 16: 0.068 s and 0.045 CPU-s against 0.09-0.12 s and 0.08 one file at a time).
    Nothing is reached by path; nothing is visible before it is on disk.

    No lock is needed: the name is the content's digest, so of two writers racing for the same
    blob the later rename puts the same bytes there again (readers holding the first keep it). A
    blob already in place (a regular file of the right size) is left alone. A kill leaves at most
    ``<etag>.<random>.small.incomplete`` temps, which ``gc`` removes (at once when the blob is
    there, even from under a live writer: then the blob that is there is the answer)."""
    if folders is None:
        with HeldFolders(layout.cache_dir) as own:
            return install_blobs_bytes(layout, items, own)
    with folders.held(layout.blobs) as blobs:
        temps: list[tuple[int, str, str, int]] = []  # (fd, temp name, etag, size); fd -1 once closed
        try:
            for etag, data in items:
                layout.blob(etag)  # (validates the etag)
                if _is_blob_at(blobs, etag, len(data)):
                    continue
                fd, tmp = create_exclusive_at(blobs, f"{etag}.", ".small.incomplete", shown=layout.blobs)
                temps.append((fd, tmp, etag, len(data)))
                write_all(fd, data)
                os.fchmod(fd, FILE_MODE)
            for fd, _tmp, _etag, _n in temps:
                os.fsync(fd)
            for i, (fd, tmp, etag, n) in enumerate(temps):
                os.close(fd)
                temps[i] = (-1, tmp, etag, n)
                try:
                    os.replace(tmp, etag, src_dir_fd=blobs, dst_dir_fd=blobs)
                except FileNotFoundError:
                    # our temp was swept meanwhile: `gc` removes a blob's temps once the blob is
                    # there, and no lock marks this one in use — another writer installed the same bytes
                    if not _is_blob_at(blobs, etag, n):
                        raise
        except BaseException:
            for fd, tmp, _etag, _n in temps:
                if fd >= 0:
                    os.close(fd)
                try:
                    os.unlink(tmp, dir_fd=blobs)
                except OSError:
                    pass
            raise


def _is_blob_at(blobs: int, etag: str, size: int) -> bool:
    try:
        st = os.lstat(etag, dir_fd=blobs)
    except FileNotFoundError:
        return False
    return stat.S_ISREG(st.st_mode) and st.st_size == size


def _same_inode(path: Path, fd: int) -> bool:
    try:
        a, b = os.lstat(path), os.fstat(fd)
    except OSError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def new_blob_temp(layout: RepoLayout, etag: str, kind: str) -> tuple[int, Path]:
    """A fresh temp file in ``blobs/`` (``O_EXCL|O_NOFOLLOW``, unpredictable name): (fd, path).

    Created in ``blobs/`` as reached from the cache root without following links (held by an
    fd from the check to the create): a ``blobs/`` swapped for a link meanwhile gets nothing."""
    layout.blob(etag)
    with confined_folder(layout.blobs, layout.cache_dir) as folder:
        fd, tmp = create_exclusive(folder, f"{etag}.", f".{kind}.incomplete", 0o600)
    return fd, layout.blobs / tmp.name


def _is_blob(target: Path, size: int) -> bool:
    try:
        st = os.lstat(target)
    except OSError:
        return False
    return stat.S_ISREG(st.st_mode) and st.st_size == size


def copy_into_blob(layout: RepoLayout, entry: FileEntry, source: Path | int) -> Path:
    """Copy a local file into ``blobs/<etag>`` through a temp file (used by ``import``).

    ``source`` is a path (opened without following a link) or an fd open on it; the bytes are
    hashed *as they are copied* and installed only when they match ``entry``: what lands in the
    cache is what the record says, whatever is swapped in at the path or written meanwhile.
    """
    from ..errors import IntegrityError
    from ..hashing import BlobHasher

    target = layout.blob(entry.etag)
    if _is_blob(target, entry.size):
        return target
    src_fd, own = (source, False) if isinstance(source, int) else (open_regular(source), True)
    try:
        fd, tmp = new_blob_temp(layout, entry.etag, "import")
        try:
            hasher = BlobHasher(entry.size, entry.is_lfs)
            with os.fdopen(fd, "wb") as out:
                offset = 0
                while offset < entry.size:
                    chunk = os.pread(src_fd, min(1 << 20, entry.size - offset), offset)
                    if not chunk:
                        break
                    hasher.update(chunk)
                    write_all(out.fileno(), chunk)
                    offset += len(chunk)
                os.fsync(out.fileno())
            if offset != entry.size or hasher.hexdigest() != entry.etag:
                raise IntegrityError(f"{entry.path} changed while it was imported",
                                     "import again once nothing writes the folder")
            return install_blob(layout, entry.etag, tmp)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    finally:
        if own:
            os.close(src_fd)


def link_file(layout: RepoLayout, commit: str, entry: FileEntry, folders: HeldFolders | None = None) -> Path:
    """Point ``snapshots/<commit>/<path>`` at the file's blob (an atomic relative symlink); returns the link.

    The blob must already be in place. The link's folder (made when missing) and
    ``.modelcache/tmp/`` (where the link is made before it is renamed into place) are reached
    through the run's ``folders`` (or opened from the cache root for this call), never through
    a link. A folder removed meanwhile (``rm --force``) is reached from the root again, once.
    """
    link = layout.snapshot_file(commit, entry.path)
    layout.blob(entry.etag)  # validates the etag
    rel = "../" * (entry.path.count("/") + 2) + "blobs/" + entry.etag
    if folders is None:
        with HeldFolders(layout.cache_dir) as own:
            return link_file(layout, commit, entry, own)
    for attempt in range(2):
        try:
            with folders.held(link.parent, create=True) as folder, folders.held(layout.tmp, create=True) as tmp:
                symlink_at(rel, folder, link.name, tmp)
            return link
        except FileNotFoundError:
            if attempt:
                raise
            folders.refresh(layout.folder)
    return link


def publish_record(layout: RepoLayout, record: TreeRecord) -> None:
    """Write the completeness record (temp in ``.modelcache/tmp/``), then make the snapshot folder."""
    shared_mkdir(layout.snapshot(record.commit), layout.cache_dir)
    write_record(layout.tree_record(record.commit), record, root=layout.cache_dir, tmp_dir=layout.tmp)
