"""``import DIR``: publish a local model folder into the cache under a deterministic commit id.

LFS or not is decided as a Hub repo with HF's default ``.gitattributes`` would: weights and
other binary formats, and any file of 10 MiB or more, are LFS (blob named by sha256).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import InvalidInput
from ..files import open_regular
from ..hashing import CHUNK, BlobHasher, git_blob_sha1, lfs_pointer
from ..validation import validate_repo_path
from .layout import RepoLayout
from .publish import copy_into_blob, ensure_repo_dirs, link_file, publish_record
from ..protocol import FileEntry
from .records import TreeRecord

__all__ = ["ImportPlanItem", "commit_id_for", "import_folder", "is_lfs_path", "plan_import"]

LFS_THRESHOLD = 10 * 1024 * 1024
LFS_SUFFIXES = (
    ".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".h5", ".msgpack", ".onnx", ".gguf", ".ggml",
    ".model", ".npy", ".npz", ".pkl", ".pickle", ".tflite", ".tar", ".gz", ".zip", ".zst", ".arrow", ".parquet",
)


def is_lfs_path(path: str, size: int) -> bool:
    """True when a file would be LFS on the Hub: 10 MiB or more, or a weights/binary suffix."""
    return size >= LFS_THRESHOLD or path.lower().endswith(LFS_SUFFIXES)


@dataclass(frozen=True)
class ImportPlanItem:
    """One local file to import, with its entry (path, size, blob id, sha256 for LFS)."""

    source: Path
    entry: FileEntry


def _hash_fd(fd: int) -> tuple[int, str, str]:
    """(size, git sha1 of the content, sha256 of the content) in one read of ``fd``."""
    size = os.fstat(fd).st_size
    sha1 = BlobHasher(size, lfs=False)
    sha256 = hashlib.sha256()
    offset = 0
    while offset < size and (chunk := os.pread(fd, min(CHUNK, size - offset), offset)):
        sha1.update(chunk)
        sha256.update(chunk)
        offset += len(chunk)
    if offset != size:
        raise InvalidInput(f"file changed while it was read (fd {fd})", "import it again once nothing writes it")
    return size, sha1.hexdigest(), sha256.hexdigest()


def plan_import(folder: Path) -> list[ImportPlanItem]:
    """Hash every regular file under ``folder``; refuse symlinks that leave it."""
    folder = folder.resolve()
    if not folder.is_dir():
        raise InvalidInput(f"{folder} is not a directory", "give the folder that holds config.json and the weights")
    items: list[ImportPlanItem] = []
    for root, dirs, files in os.walk(folder, followlinks=False):
        dirs[:] = sorted(d for d in dirs if d not in (".git", ".cache", "__pycache__"))
        for name in sorted(files):
            src = Path(root) / name
            rel = src.relative_to(folder).as_posix()
            if name == ".DS_Store":
                continue
            validate_repo_path(rel)
            real = src.resolve()
            if src.is_symlink() and folder not in real.parents:
                raise InvalidInput(f"{rel} is a symlink that leaves {folder}", "copy the file in, or remove the link")
            try:
                fd = open_regular(real)  # O_NOFOLLOW|O_NONBLOCK: a FIFO or a link swapped in is skipped
            except OSError:
                continue
            try:
                size, sha1, sha256 = _hash_fd(fd)
            finally:
                os.close(fd)
            if is_lfs_path(rel, size):
                entry = FileEntry(rel, size, git_blob_sha1(lfs_pointer(sha256, size)), sha256)
            else:
                entry = FileEntry(rel, size, sha1)
            items.append(ImportPlanItem(real, entry))
    if not items:
        raise InvalidInput(f"{folder} holds no files", "give the folder that holds config.json and the weights")
    return items


def _copy_verified(layout: RepoLayout, item: ImportPlanItem) -> None:
    """Open the source once (no links followed) and copy from *that fd*, hashing as it copies:
    what lands in ``blobs/`` is exactly what the record says, whatever is swapped in meanwhile."""
    try:
        fd = open_regular(item.source)
    except OSError as exc:
        raise InvalidInput(f"{item.entry.path}: cannot open it again ({exc.strerror or exc})",
                           "was it replaced by a link or removed during the import? import again") from None
    try:
        copy_into_blob(layout, item.entry, fd)
    finally:
        os.close(fd)


def commit_id_for(entries: list[FileEntry]) -> str:
    """Deterministic: the same files (paths and contents) always give the same 40-hex id."""
    h = hashlib.sha1(b"modelcache-import-v1\n", usedforsecurity=False)
    for e in sorted(entries, key=lambda e: e.path):
        h.update(f"{e.path}\0{e.size}\0{e.blob_id}\0{e.lfs_sha256 or ''}\n".encode())
    return h.hexdigest()


def import_folder(layout: RepoLayout, folder: Path, revision: str = "main") -> TreeRecord:
    """Publish every file of ``folder`` into the cache and point ``revision`` at the resulting commit.

    The commit id is derived from the files, so importing the same folder twice gives the same
    commit. Reads and hashes every file (slow for big models); returns the completeness record.
    Raises ``InvalidInput`` when ``folder`` is not a directory or a symlink in it leads outside.
    """
    items = plan_import(folder)
    record = TreeRecord.of(commit_id_for([i.entry for i in items]), [i.entry for i in items])
    ensure_repo_dirs(layout)
    publish_record(layout, record)
    for item in items:
        _copy_verified(layout, item)
        link_file(layout, record.commit, item.entry)
    layout.write_ref(revision, record.commit)
    return record
