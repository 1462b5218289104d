"""Reading the cache for the Hub API: pick the repo a path names, its commit index, info,
tree listings and file responses. No file outside the cache directory is ever served, whatever
the path or the symlinks say.
"""

from __future__ import annotations

import hashlib
import logging
import os
import stat
import time
from concurrent.futures import ThreadPoolExecutor
from collections.abc import Callable
from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response

from ..cache.layout import RepoLayout
from ..cache.readiness import resolve_commit
from ..cache.records import read_record
from ..errors import InvalidInput
from ..protocol import FileEntry
from ..validation import is_commit, validate_repo_id, validate_repo_path, validate_revision
from ._auth import Gate
from ._http import HttpError, WithErrorHeaders, decode_cursor, encode_cursor, next_page_url
from ._blob import BlobResponse, single_range
from ._fast import SMALL_FILE, Hit, ResolveCache, stamp_of, whole_file_headers
from ._index import CommitIndex, IndexCache
from ._routes import Candidate, Target

__all__ = ["NotHere", "OnServed", "Reader", "raw_path_of", "valid_repo"]

log = logging.getLogger("modelcache.server")

OnServed = Callable[[RepoLayout, str], None]
TRUE = ("1", "true", "True", "yes")
_RANGE_ERRORS = {
    416: ("RangeNotSatisfiable", "the requested range is outside the file"),
    400: ("BadRequest", "malformed Range header"),
}


class NotHere(HttpError):
    """A file the commit lists but the cache does not hold (in full): a mirror fetches it."""

    def __init__(self, layout: RepoLayout, commit: str, entry: FileEntry | None, path: str) -> None:
        super().__init__(
            404, "EntryNotFound",
            f"{path} of {layout.repo_id} at {commit} is not cached here (partial download or smaller profile)",
        )
        # not ``self.commit``: that field of HttpError becomes X-Repo-Commit (and HF's .no_exist)
        self.layout, self.snapshot_commit, self.entry = layout, commit, entry


def _not_cached(layout: RepoLayout, commit: str, path: str, entry: FileEntry | None = None) -> HttpError:
    """Listed in the commit, not held here in full: no ``X-Repo-Commit``, so no ``.no_exist``."""
    return NotHere(layout, commit, entry, path)


class _BlobResponse(FileResponse):
    """``FileResponse`` (ranges, ``If-Range``, HEAD) with larger reads: one thread hop per MiB,
    not per 64 KiB, which is most of the cost of streaming a multi-GB shard."""

    chunk_size = 1 << 20


class Reader:
    """Answers the Hub API and file requests from one cache directory, read-only.

    Never serves a file outside the cache directory, whatever the path or symlinks say.
    """

    def __init__(self, cache_dir: Path, page_size: int, on_served: OnServed | None, gate: Gate) -> None:
        if page_size < 1:
            raise ValueError("page_size must be at least 1")
        self.cache_dir = Path(cache_dir)
        real_root = os.path.realpath(self.cache_dir)
        self.root_prefix = real_root if real_root.endswith(os.sep) else real_root + os.sep
        self.page_size = page_size
        self.on_served = on_served
        self.indexes = IndexCache(self.cache_dir)
        self.gate = gate
        self.fast = ResolveCache()
        self._noted: dict[tuple[str, str], float] = {}
        self._use_writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mc-use")

    def pick(self, target: Target) -> tuple[RepoLayout, Candidate]:
        """The repo the path names; when ``org/name`` and ``name`` both parse, the one cached."""
        first: tuple[RepoLayout, Candidate] | None = None
        for cand in target.candidates:
            try:
                validate_repo_id(cand.repo_id)
            except InvalidInput:
                continue
            layout = RepoLayout(self.cache_dir, target.repo_type, cand.repo_id)
            if layout.folder.is_dir():
                return layout, _validated(cand)
            first = first or (layout, cand)
        if first is None:
            if not target.candidates:
                raise HttpError(404, "NotFound", "no such endpoint on this modelcache server")
            raise HttpError(400, "BadRequest", f"invalid repo id {target.candidates[0].repo_id!r}")
        layout, _ = first
        raise HttpError(404, "RepoNotFound", f"{layout.repo_type} {layout.repo_id} is not in this cache")

    def index(self, layout: RepoLayout, revision: str) -> CommitIndex:
        """The commit index of ``revision`` (branch, tag or commit) in this cache.

        Raises ``InvalidInput`` for an invalid revision, ``HttpError`` 404 ``RevisionNotFound`` when the
        cache does not have it.
        """
        validate_revision(revision)
        commit = resolve_commit(layout, revision)
        index = self.indexes.get(layout, commit) if commit is not None else None
        if index is None:
            raise HttpError(404, "RevisionNotFound", f"revision {revision!r} of {layout.repo_id} is not in this cache")
        return index

    # -- /api ---------------------------------------------------------------------------------

    def api(self, request: Request, target: Target) -> Response:
        """The answer to an ``/api/`` request: repo info, or a tree listing.

        Raises ``HttpError`` (400/404) for a bad or unknown repo, revision or endpoint.
        """
        layout, cand = self.pick(target)
        index = self.index(layout, cand.revision)
        if cand.action == "tree":
            return self.tree(request, layout, index, cand.path)
        if cand.path:
            raise HttpError(404, "NotFound", "no such endpoint on this modelcache server")
        return JSONResponse(self.info(layout, index, request.query_params.get("blobs") in TRUE))

    def info(self, layout: RepoLayout, index: CommitIndex, blobs: bool) -> dict[str, object]:
        """The repo info JSON for ``index``'s commit (``siblings`` with sizes and blob ids when ``blobs``)."""
        siblings: list[dict[str, object]] = []
        for item in index.entries:
            if item["type"] != "file":
                continue
            sib: dict[str, object] = {"rfilename": item["path"]}
            if blobs:
                sib["size"] = item["size"]
                sib["blobId"] = item["oid"]
                lfs = item.get("lfs")
                if isinstance(lfs, dict):
                    sib["lfs"] = {"sha256": lfs["oid"], "size": lfs["size"], "pointerSize": lfs["pointerSize"]}
            siblings.append(sib)
        access = self.gate.access_of(layout)
        key = f"{layout.repo_type}/{layout.repo_id}".encode()
        out: dict[str, object] = {
            "_id": hashlib.sha1(key, usedforsecurity=False).hexdigest()[:24],
            "id": layout.repo_id,
        }
        if layout.repo_type == "model":
            out["modelId"] = layout.repo_id
        if "/" in layout.repo_id:
            out["author"] = layout.repo_id.split("/", 1)[0]
        out.update(
            sha=index.commit,
            private=access.private,
            gated="manual" if access.gated else False,
            disabled=False,
            downloads=0,
            likes=0,
            tags=[],
            lastModified=index.last_modified,
            createdAt=index.last_modified,
            usedStorage=sum(e.size for e in index.files.values()),
            siblings=siblings,
        )
        return out

    def tree(self, request: Request, layout: RepoLayout, index: CommitIndex, path: str) -> Response:
        """One page of the tree listing of folder ``path`` (``Link: rel=next`` when more follow).

        Raises ``InvalidInput`` for an unsafe path, ``HttpError`` 404 ``EntryNotFound`` when ``path`` is
        not a folder of the commit.
        """
        if path:
            validate_repo_path(path)
        if not index.is_folder(path):
            raise HttpError(
                404,
                "EntryNotFound",
                f"{path!r} is not a folder of {layout.repo_id} at {index.commit}",
                index.commit if index.from_record else None,
            )
        query = request.query_params
        cursor = query.get("cursor")
        after = decode_cursor(cursor) if cursor else None
        page, more = index.listing(path, query.get("recursive") in TRUE, after, self.page_size)
        headers = {}
        if more and page:
            url = next_page_url(request, encode_cursor(str(page[-1]["path"])))
            headers["Link"] = f'<{url}>; rel="next"'
        return JSONResponse(page, headers=headers)

    # -- /resolve -----------------------------------------------------------------------------

    def resolve(self, request: Request, target: Target) -> Response:
        """The file a ``/resolve`` target names, from the cache (raises ``NotHere`` when the commit
        lists it but the cache does not hold it in full)."""
        return self.answer(request, self.find(raw_path_of(request.scope), target))

    def find(self, raw_path: bytes, target: Target) -> Hit:
        """Resolve ``target`` (parsed from ``raw_path``) the slow way, and remember it in ``fast``
        under ``raw_path`` when it is cacheable."""
        hit = self.fast.get(raw_path)
        if hit is not None:
            return hit
        layout, cand = self.pick(target)
        path = cand.path
        index = self.index(layout, cand.revision)
        validate_repo_path(path)
        commit = index.commit
        entry = index.files.get(path)
        if entry is None:
            if index.from_record:
                raise HttpError(404, "EntryNotFound", f"{path} is not a file of {layout.repo_id} at {commit}", commit)
            raise HttpError(
                404, "EntryNotFound", f"{path} is not cached here ({layout.repo_id} at {commit} has no file list)"
            )
        ref_path = ref_stamp = None
        if not is_commit(cand.revision):
            ref_path = str(layout.ref(cand.revision))
            try:
                ref_stamp = stamp_of(os.stat(ref_path))
            except OSError:
                ref_path = None  # resolved without a ref file (a snapshot folder named by the revision)
        link = layout.snapshot_file(commit, path)
        try:
            link_stamp = stamp_of(os.lstat(link))
        except OSError:
            raise _not_cached(layout, commit, path, _record_entry(layout, commit, path)) from None
        real = os.path.realpath(link)
        if not real.startswith(self.root_prefix):
            if os.path.lexists(link):
                log.warning("refusing %s: it resolves outside the cache directory", link)
                raise _not_cached(layout, commit, path)
            raise _not_cached(layout, commit, path, _record_entry(layout, commit, path))
        try:
            st = os.stat(real)
        except OSError:
            raise _not_cached(layout, commit, path, _record_entry(layout, commit, path)) from None
        if not stat.S_ISREG(st.st_mode) or st.st_size != entry.size:
            raise _not_cached(layout, commit, path, _record_entry(layout, commit, path))
        hit = Hit(layout, cand, commit, entry, real, ref_path, ref_stamp, str(link), link_stamp, stamp_of(st), st,
                  whole_file_headers(commit, entry, st), by_commit=is_commit(cand.revision))
        if st.st_size <= SMALL_FILE:
            hit.body = _read_small(real, entry.size)
        if ref_stamp is not None or ref_path is None and is_commit(cand.revision):
            if target.candidates and cand == target.candidates[0]:  # the preferred reading: stays the one picked
                self.fast.put(raw_path, hit)
        return hit

    def answer(self, request: Request, hit: Hit) -> Response:
        """The response for a found file: whole (from memory when small, else from a verified
        descriptor), a range, or HEAD."""
        if request.method == "GET":
            self.note_use(hit.layout, hit.commit)
        ranged = "range" in request.headers
        if not ranged and (hit.body is not None or request.method == "HEAD"):
            return _Prebuilt(hit.headers, hit.body if request.method == "GET" and hit.body is not None else b"")
        if not ranged:
            return BlobResponse(hit)  # from a verified descriptor, zero-copy when the server can
        if "if-range" not in request.headers and (part := single_range(request.headers["range"], hit.entry.size)):
            return BlobResponse(hit, part)
        headers = {k.decode(): v.decode() for k, v in hit.headers[:5]}
        response = _BlobResponse(hit.real, headers=headers, media_type="application/octet-stream", stat_result=hit.stat)
        return WithErrorHeaders(response, _RANGE_ERRORS)  # type: ignore[return-value]

    def note_use(self, layout: RepoLayout, commit: str) -> None:
        """Tell ``on_served`` (at most once a second per revision, off the event loop: it writes)."""
        if self.on_served is None:
            return
        key = (str(layout.folder), commit)
        now = time.monotonic()
        if now - self._noted.get(key, -1e9) < 1.0:
            return
        self._noted[key] = now
        if len(self._noted) > 10_000:
            self._noted.clear()
        self._use_writer.submit(self._notify, layout, commit)

    def _notify(self, layout: RepoLayout, commit: str) -> None:
        try:
            self.on_served(layout, commit)  # type: ignore[misc]
        except Exception:
            log.debug("on_served callback failed", exc_info=True)


class _Prebuilt(Response):
    """A response whose headers were built once (a fast-path hit): no per-request header work."""

    def __init__(self, raw_headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        self.status_code = 200
        self.background = None
        self.body = body
        self.raw_headers = raw_headers


def raw_path_of(scope: dict[str, object]) -> bytes:
    """The request's path as sent (percent-escapes kept, no query): what hits are remembered by."""
    raw = scope.get("raw_path")
    return raw if isinstance(raw, bytes) and raw else str(scope["path"]).encode()


def _read_small(real: str, size: int) -> bytes | None:
    """The whole file, read through a no-follow, non-blocking descriptor (None if it changed)."""
    try:
        fd = os.open(real, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        data = os.pread(fd, size + 1, 0)
    except OSError:
        return None
    finally:
        os.close(fd)
    return data if len(data) == size else None


def body_bytes(range_header: str | None, headers: object) -> int:
    """Bytes a response will carry: the asked range of the file, else its Content-Length."""
    length = int(headers.get("content-length") or 0)  # type: ignore[attr-defined]
    if not range_header or not range_header.startswith("bytes=") or "," in range_header:
        return length
    size = int(headers.get("x-linked-size") or length)  # type: ignore[attr-defined]
    a, _, b = range_header[6:].partition("-")
    try:
        if not a:
            return min(int(b), size)
        return max(0, min(int(b) + 1 if b else size, size) - int(a))
    except ValueError:
        return 0


def _validated(cand: Candidate) -> Candidate:
    """Revision and path checked before anything (access decisions included) looks at them:
    what is authorised is exactly what is served."""
    validate_revision(cand.revision)
    if cand.path:
        validate_repo_path(cand.path)
    return cand


def valid_repo(repo_id: str) -> bool:
    """True when ``repo_id`` is a valid repo id."""
    try:
        validate_repo_id(repo_id)
        return True
    except InvalidInput:
        return False


def _record_entry(layout: RepoLayout, commit: str, path: str) -> FileEntry | None:
    record = read_record(layout.tree_record(commit), commit)
    return record.files.get(path) if record is not None else None


