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
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from ..errors import IntegrityError, InvalidInput
from ..hashing import BlobHasher
from ..validation import is_commit, validate_repo_id, validate_repo_path, validate_repo_type, validate_revision
from .layout import RepoLayout
from .publish import ensure_repo_dirs, install_blob, link_file, publish_record
from ..protocol import FileEntry
from .records import TreeRecord

__all__ = ["BundleInfo", "export_bundle", "import_bundle"]

MANIFEST = "modelcache-bundle.json"
FORMAT = 1


@dataclass(frozen=True)
class BundleInfo:
    repo_type: str
    repo_id: str
    revision: str
    commit: str
    files: int
    size: int

    def to_dict(self) -> dict[str, object]:
        return dict(self.__dict__)


def export_bundle(layout: RepoLayout, record: TreeRecord, revision: str, out: IO[bytes]) -> BundleInfo:
    snapshot = layout.snapshot(record.commit)
    present = [e for e in record.files.values() if _size(snapshot / e.path) == e.size]
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
            with open(snapshot / e.path, "rb") as fh:
                tar.addfile(info, fh)
    return BundleInfo(layout.repo_type, layout.repo_id, revision, record.commit, len(present),
                      sum(e.size for e in present))


def _size(path: Path) -> int | None:
    try:
        return os.stat(path).st_size
    except OSError:
        return None


def import_bundle(cache_dir: Path, src: IO[bytes]) -> BundleInfo:
    bad = "the file is not a modelcache bundle (made by `modelcache export`), or it is damaged"
    try:
        tar = tarfile.open(fileobj=src, mode="r|")
    except tarfile.TarError:
        raise InvalidInput("cannot read the bundle: not a tar file", bad) from None
    with tar:
        first = tar.next()
        if first is None or first.name != MANIFEST or not first.isfile():
            raise InvalidInput(f"the bundle does not start with {MANIFEST}", bad)
        try:
            manifest = json.loads(tar.extractfile(first).read())  # type: ignore[union-attr]
            if manifest.get("format") != FORMAT:
                raise InvalidInput(f"unknown bundle format {manifest.get('format')!r}", "upgrade modelcache")
            repo_type = validate_repo_type(manifest["repo_type"])
            repo_id = validate_repo_id(manifest["repo_id"])
            revision = validate_revision(manifest["revision"])
            commit = manifest["commit"]
            if not isinstance(commit, str) or not is_commit(commit):
                raise InvalidInput("malformed commit id in the bundle", bad)
            record = TreeRecord.of(commit, (FileEntry.from_json(p, i) for p, i in manifest["record"]["files"].items()))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise InvalidInput(f"malformed bundle manifest ({type(exc).__name__})", bad) from None
        layout = RepoLayout(cache_dir, repo_type, repo_id)
        ensure_repo_dirs(layout)
        publish_record(layout, record)
        count = size = 0
        while (member := tar.next()) is not None:
            if not member.isfile() or not member.name.startswith("files/"):
                raise InvalidInput(f"unexpected entry {member.name!r} in the bundle", bad)
            path = validate_repo_path(member.name[len("files/"):])
            entry = record.files.get(path)
            if entry is None or member.size != entry.size:
                raise IntegrityError(f"{path}: not in the bundle's record, or of the wrong size", bad)
            _restore(layout, commit, entry, tar.extractfile(member))  # type: ignore[arg-type]
            count += 1
            size += entry.size
        if revision != commit:
            layout.write_ref(revision, commit)
    return BundleInfo(repo_type, repo_id, revision, commit, count, size)


def _restore(layout: RepoLayout, commit: str, entry: FileEntry, fh: IO[bytes]) -> None:
    if (layout.blob(entry.etag)).exists() and _size(layout.blob(entry.etag)) == entry.size:
        while fh.read(1 << 20):
            pass
        link_file(layout, commit, entry)
        return
    tmp = layout.blobs / f"{entry.etag}.bundle.incomplete"
    hasher = BlobHasher(entry.size, entry.is_lfs)
    try:
        with open(tmp, "wb") as out:
            while chunk := fh.read(1 << 20):
                hasher.update(chunk)
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        if hasher.hexdigest() != entry.etag:
            raise IntegrityError(f"{entry.path}: content does not match its hash in the bundle's record",
                                 "the bundle is damaged: export it again")
        install_blob(layout, entry.etag, tmp)
    finally:
        tmp.unlink(missing_ok=True)
    link_file(layout, commit, entry)
