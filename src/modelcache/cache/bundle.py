"""Backup and air-gap transfer: one tar file holding a revision's files and its record.

Layout: ``modelcache-bundle.json`` first (repo, revision, commit, the completeness record),
then ``files/<path>`` for every file the revision has on disk. Weights do not compress, so the
tar is plain and streams (``-`` for stdin/stdout works). Import verifies every file's size and
hash while it streams into ``blobs/``, so a damaged bundle never yields a corrupt cache.
"""

from __future__ import annotations

import io
import json
import os
import stat
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from ..diskwrite import write_all
from ..errors import IntegrityError, InvalidInput
from ..hashing import BlobHasher
from ..validation import is_commit, validate_repo_id, validate_repo_path, validate_repo_type, validate_revision
from .layout import RepoLayout
from ..files import confined_rmtree, confined_unlink, is_inside, open_regular
from .publish import ensure_repo_dirs, install_blob, link_file, new_blob_temp, publish_record
from ..protocol import FileEntry
from .records import TreeRecord, read_record

__all__ = ["BundleInfo", "export_bundle", "import_bundle"]

MANIFEST = "modelcache-bundle.json"
FORMAT = 1


@dataclass(frozen=True)
class BundleInfo:
    """What a bundle holds: the repo, revision and commit, number of files and their total size in bytes."""

    repo_type: str
    repo_id: str
    revision: str
    commit: str
    files: int
    size: int

    def to_dict(self) -> dict[str, object]:
        """The fields as a flat dict."""
        return dict(self.__dict__)


def _open_snapshot_file(layout: RepoLayout, snapshot: Path, e: FileEntry) -> int | None:
    """An fd on the file ``e`` names, only if its link leads to a regular file of the right size
    inside the cache (a link planted to lead elsewhere is never followed out)."""
    real = os.path.realpath(snapshot / e.path)
    if not is_inside(real, layout.cache_dir):
        return None
    try:
        fd = open_regular(real)
    except OSError:
        return None
    if os.fstat(fd).st_size != e.size:
        os.close(fd)
        return None
    return fd


def export_bundle(layout: RepoLayout, record: TreeRecord, revision: str, out: IO[bytes]) -> BundleInfo:
    """Write the revision's files that are on disk in full (and inside the cache) as a bundle."""
    snapshot = layout.snapshot(record.commit)
    fds: dict[str, int] = {}
    try:
        for e in record.files.values():
            fd = _open_snapshot_file(layout, snapshot, e)
            if fd is not None:
                fds[e.path] = fd
        present = [e for e in record.files.values() if e.path in fds]
        manifest = {
            "format": FORMAT, "repo_type": layout.repo_type, "repo_id": layout.repo_id, "revision": revision,
            "commit": record.commit, "record": json.loads(record.to_bytes()),
        }
        with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
            data = json.dumps(manifest, indent=1).encode()
            info = tarfile.TarInfo(MANIFEST)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
            for e in present:
                info = tarfile.TarInfo(f"files/{e.path}")
                info.size, info.mode = e.size, 0o644
                with os.fdopen(fds.pop(e.path), "rb") as fh:
                    tar.addfile(info, fh)
    finally:
        for fd in fds.values():
            os.close(fd)
    return BundleInfo(layout.repo_type, layout.repo_id, revision, record.commit, len(present),
                      sum(e.size for e in present))


def import_bundle(cache_dir: Path, src: IO[bytes]) -> BundleInfo:
    """Restore a bundle: every file is verified as it streams into ``blobs/``; the record, the
    snapshot links and the ref are written only once every file checked out.

    A commit already in the cache with another file list is refused (never overwritten); a
    failed import removes the blobs it added and leaves everything else as it was.
    """
    bad = "the file is not a modelcache bundle (made by `modelcache export`), or it is damaged"
    try:
        tar = tarfile.open(fileobj=src, mode="r|")
    except tarfile.TarError:
        raise InvalidInput("cannot read the bundle: not a tar file", bad) from None
    with tar:
        first = tar.next()
        if first is None or first.name != MANIFEST or not first.isfile() or first.size > 256 << 20:
            raise InvalidInput(f"the bundle does not start with {MANIFEST}", bad)
        try:
            manifest = json.loads(tar.extractfile(first).read(),  # type: ignore[union-attr]
                                  parse_constant=_no_constant)
            if not isinstance(manifest, dict):
                raise TypeError("manifest is not an object")
            if manifest.get("format") != FORMAT:
                raise InvalidInput(f"unknown bundle format {manifest.get('format')!r}", "upgrade modelcache")
            repo_type = validate_repo_type(manifest["repo_type"])
            repo_id = validate_repo_id(manifest["repo_id"])
            revision = validate_revision(manifest["revision"])
            commit = manifest["commit"]
            if not isinstance(commit, str) or not is_commit(commit):
                raise InvalidInput("malformed commit id in the bundle", bad)
            record = TreeRecord.of(commit, (FileEntry.from_json(p, i) for p, i in manifest["record"]["files"].items()))
        except (KeyError, TypeError, ValueError, AttributeError, RecursionError) as exc:
            raise InvalidInput(f"malformed bundle manifest ({type(exc).__name__})", bad) from None
        layout = RepoLayout(cache_dir, repo_type, repo_id)
        existing = read_record(layout.tree_record(commit), commit)
        if existing is not None and dict(existing.files) != dict(record.files):
            raise IntegrityError(
                f"{repo_id}@{commit[:12]} is already cached with another file list than the bundle's",
                "the bundle does not match the commit it names: refusing to overwrite; check where it came from")
        ensure_repo_dirs(layout)
        added: list[Path] = []
        restored: list[FileEntry] = []
        try:
            while (member := tar.next()) is not None:
                if not member.isfile() or not member.name.startswith("files/"):
                    raise InvalidInput(f"unexpected entry {member.name!r} in the bundle", bad)
                path = validate_repo_path(member.name[len("files/"):])
                entry = record.files.get(path)
                if entry is None or member.size != entry.size:
                    raise IntegrityError(f"{path}: not in the bundle's record, or of the wrong size", bad)
                if _restore_blob(layout, entry, tar.extractfile(member)):  # type: ignore[arg-type]
                    added.append(layout.blob(entry.etag))
                restored.append(entry)
            fresh = existing is None
            _refuse_other_content(layout, commit, restored)
            if fresh:
                publish_record(layout, record)
            try:
                for entry in restored:
                    link_file(layout, commit, entry)
                if revision != commit:
                    layout.write_ref(revision, commit)
            except BaseException:
                if fresh:
                    confined_rmtree(layout.snapshot(commit), cache_dir)
                    confined_unlink(layout.tree_record(commit), cache_dir)
                raise
        except BaseException:
            for blob in added:
                confined_unlink(blob, cache_dir)
            raise
    return BundleInfo(repo_type, repo_id, revision, commit, len(restored), sum(e.size for e in restored))


def _refuse_other_content(layout: RepoLayout, commit: str, entries: list[FileEntry]) -> None:
    """A snapshot file already there that is not the bundle's blob is another content: refuse."""
    for e in entries:
        link = layout.snapshot_file(commit, e.path)
        if not os.path.lexists(link):
            continue
        target = os.readlink(link) if os.path.islink(link) else ""
        if os.path.basename(target) != e.etag:
            raise IntegrityError(f"{layout.repo_id}@{commit[:12]}: {e.path} is already cached with other content",
                                 "refusing to overwrite a cached commit with a bundle's files; check the bundle")


def _no_constant(name: str) -> object:
    raise ValueError(f"{name} in the bundle manifest")


def _restore_blob(layout: RepoLayout, entry: FileEntry, fh: IO[bytes]) -> bool:
    """Stream one file into ``blobs/<etag>``, verified; True when the blob is new here."""
    target = layout.blob(entry.etag)
    try:
        st = os.lstat(target)
        if stat.S_ISREG(st.st_mode) and st.st_size == entry.size:
            while fh.read(1 << 20):
                pass
            return False
    except OSError:
        pass
    fd, tmp = new_blob_temp(layout, entry.etag, "bundle")
    hasher = BlobHasher(entry.size, entry.is_lfs)
    try:
        with os.fdopen(fd, "wb") as out:
            while chunk := fh.read(1 << 20):
                hasher.update(chunk)
                write_all(out.fileno(), chunk)
            os.fsync(out.fileno())
        if hasher.hexdigest() != entry.etag:
            raise IntegrityError(f"{entry.path}: content does not match its hash in the bundle's record",
                                 "the bundle is damaged: export it again")
        install_blob(layout, entry.etag, tmp)
    finally:
        tmp.unlink(missing_ok=True)
    return True
