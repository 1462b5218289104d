"""An HF-compatible, read-only HTTP endpoint over a cache directory.

Point ``HF_ENDPOINT`` at it and ``huggingface_hub`` (``snapshot_download``, ``hf_hub_download``,
``model_info``, ``list_repo_tree``) reads what the cache holds, and nothing else:

- ``GET /api/{models|datasets|spaces}/{repo}[/revision/{rev}]`` → repo info (``?blobs=true``);
- ``GET /api/.../{repo}/tree/{rev}[/{path}]`` → listing, paginated with a ``Link`` header;
- ``HEAD|GET /[datasets/|spaces/]{repo}/resolve/{rev}/{path}`` → the bytes, with ranges.

Listings show the commit's whole file list (its completeness record); a file the record lists
but the cache does not hold in full is answered ``404 EntryNotFound`` *without*
``X-Repo-Commit``, so the client does not remember it as absent upstream. No file outside the
cache directory is ever served, whatever the path or the symlinks say.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import stat
import time
from collections.abc import Callable
from email.utils import formatdate
from pathlib import Path

import anyio
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route

from ..cache.access import Access, read_access
from ..cache.readiness import resolve_commit
from ..cache.layout import RepoLayout
from ..protocol import FileEntry
from ..cache.records import read_record
from ..errors import GatedRepo, InvalidInput, RepoNotFound, RevisionNotFound
from ..files import open_regular
from ..models import models_status
from ..validation import is_commit, validate_repo_id, validate_repo_path, validate_revision
from ._access import AccessPolicy, bearer_token, checked_target
from ._http import (
    HttpError,
    WithErrorHeaders,
    decode_cursor,
    encode_cursor,
    error_response,
    next_page_url,
)
from ._index import CommitIndex, IndexCache
from ._metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from ._metrics import Metrics
from .mirror import Mirror
from ._routes import Candidate, Target, parse_target
from ._stream import stream_fill

__all__ = ["create_app", "serve"]

log = logging.getLogger("modelcache.server")

OnServed = Callable[[RepoLayout, str], None]
_TRUE = ("1", "true", "True", "yes")
_SMALL = 256 * 1024
_ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
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


class _Handlers:
    def __init__(self, cache_dir: Path, page_size: int, on_served: OnServed | None,
                 access: AccessPolicy | None = None, mirror: Mirror | None = None, log_json: bool = False) -> None:
        if page_size < 1:
            raise ValueError("page_size must be at least 1")
        self.cache_dir = Path(cache_dir)
        real_root = os.path.realpath(self.cache_dir)
        self.root_prefix = real_root if real_root.endswith(os.sep) else real_root + os.sep
        self.page_size = page_size
        self.on_served = on_served
        self.indexes = IndexCache(self.cache_dir)
        self.access = access
        self.mirror = mirror
        self._access_cache: dict[Path, tuple[Access, int | str | None]] = {}
        self.metrics = Metrics(self.cache_dir, mirror.stats if mirror is not None else None)
        self.log_json = log_json

    # -- dispatch ---------------------------------------------------------------------------

    async def dispatch(self, request: Request) -> Response:
        started = time.monotonic()
        kind = "other"
        path = request.scope["path"]
        if path == "/metrics":
            kind = "metrics"
            body = await anyio.to_thread.run_sync(self.metrics.render)
            response: Response = Response(body, media_type=METRICS_CONTENT_TYPE)
        elif path == "/modelcache/models":
            kind = "models"
            q = request.query_params
            status = await anyio.to_thread.run_sync(
                lambda: models_status(self.cache_dir, disk=q.get("disk") in _TRUE, namespace=q.get("namespace"),
                                      name=q.get("name")))
            response = JSONResponse(status, status_code=200)
        elif path == "/readyz":
            kind = "readyz"
            ready = os.access(self.cache_dir, os.R_OK | os.X_OK) and self.cache_dir.is_dir()
            response = JSONResponse({"ready": ready}, status_code=200 if ready else 503)  # no paths to callers
        else:
            response = await self._route(request)
            kind = getattr(request.state, "kind", "other")
        self._account(request, kind, response, started)
        return response

    def _account(self, request: Request, kind: str, response: Response, started: float) -> None:
        m = self.metrics
        response = getattr(response, "inner", response)  # WithErrorHeaders wraps a FileResponse
        status = response.status_code
        if status == 200 and isinstance(response, FileResponse) and request.headers.get("range"):
            status = 206  # FileResponse decides on the range when it sends
        m.requests.labels(kind, str(status)).inc()
        code = response.headers.get("x-error-code")
        if code:
            m.errors.labels(code).inc()
        if kind == "resolve" and request.method == "GET" and status in (200, 206):
            m.served_bytes.inc(_body_bytes(request.headers.get("range"), response.headers))
        if self.log_json:
            log.info(json.dumps({"method": request.method, "path": request.scope["path"], "status": status,
                                 "kind": kind, "bytes": int(response.headers.get("content-length") or 0),
                                 "ms": round((time.monotonic() - started) * 1000, 1),
                                 **({"error": code} if code else {})}))

    async def _route(self, request: Request) -> Response:
        raw_path: bytes = request.scope.get("raw_path") or request.scope["path"].encode()
        try:
            if request.method not in ("GET", "HEAD"):
                raise HttpError(405, "MethodNotAllowed", "this modelcache server is read-only: use GET or HEAD")
            target = checked_target(parse_target(raw_path))  # '..'/%2e%2e/%2F refused before anything else
            request.state.kind = target.kind
            if self.mirror is not None and target.kind in ("resolve", "api"):
                await self._mirror_refresh(target)
            if target.kind in ("resolve", "api"):
                await self._authorize(request, target)
            if target.kind == "resolve":
                try:
                    response = self.resolve(request, target)
                    self.metrics.hits.inc()
                    return response
                except NotHere as miss:
                    self.metrics.misses.inc()
                    if self.mirror is None or miss.entry is None:
                        raise
                    return await stream_fill(self.mirror, request, miss.layout, miss.snapshot_commit, miss.entry,
                                             lambda: self.resolve(request, target))
            if target.kind == "api":
                return self.api(request, target)
            if target.kind == "health":
                return JSONResponse({"status": "ok"})
            raise HttpError(404, "NotFound", f"this modelcache server has no endpoint {request.scope['path']!r}")
        except HttpError as err:
            return error_response(err)
        except InvalidInput as err:
            return error_response(HttpError(400, "BadRequest", err.message))
        except Exception:  # never leak a traceback to the client; log it here
            log.exception("internal error serving %r", raw_path)
            return error_response(HttpError(500, "InternalError", "internal error in the modelcache server"))

    async def _mirror_refresh(self, target: Target) -> None:
        """Ask the upstream what the revision is now (TTL-cached); write its record here."""
        mirror = self.mirror
        assert mirror is not None
        cands = [c for c in target.candidates if _valid_repo(c.repo_id)]
        if not cands:
            return
        local = [c for c in cands if RepoLayout(self.cache_dir, target.repo_type, c.repo_id).folder.is_dir()]
        cand = (local or cands)[0]
        if not mirror.permits(cand.repo_id):
            raise HttpError(403, "RepoNotAllowed", f"{cand.repo_id} is not allowed by this mirror's policy")
        layout = RepoLayout(self.cache_dir, target.repo_type, cand.repo_id)
        validate_revision(cand.revision)
        if is_commit(cand.revision) and layout.tree_record(cand.revision).is_file():
            return  # a commit is immutable: what is here is what upstream has
        try:
            await anyio.to_thread.run_sync(mirror.refresh, layout, cand.revision)
        except RepoNotFound as exc:
            raise HttpError(404, "RepoNotFound", exc.message) from None
        except RevisionNotFound as exc:
            raise HttpError(404, "RevisionNotFound", exc.message) from None
        except GatedRepo as exc:
            raise HttpError(403, "GatedRepo", exc.message) from None

    def _access_of(self, layout: RepoLayout) -> Access:
        """``access.json`` of a repo, parsed again only when the file changes (one ``stat`` per request).

        Fails closed: a record that cannot be read counts as restricted and is never cached.
        """
        stamp: int | str | None
        try:
            stamp = os.stat(layout.state / "access.json").st_mtime_ns
        except FileNotFoundError:
            stamp = "missing"
        except OSError:
            stamp = None  # cannot tell: read it (and fail closed if that fails too)
        hit = self._access_cache.get(layout.folder)
        if hit is None or hit[1] != stamp or stamp is None:
            hit = (read_access(layout), stamp)
            if hit[0].unreadable or stamp is None:
                return hit[0]  # never cache an answer we could not read
            self._access_cache[layout.folder] = hit
        return hit[0]

    async def _authorize(self, request: Request, target: Target) -> None:
        """Gated repos: files only for allowed tokens. Private repos: nothing without one."""
        layout, cand = self._pick(target)
        restriction = self._access_of(layout)
        if not restriction.restricted or (target.kind == "api" and not restriction.private):
            return
        token = bearer_token(request.headers.get("authorization"))
        revision = resolve_commit(layout, cand.revision) or cand.revision
        if self.access is not None and await self.access.allowed(layout, revision, cand.path, token):
            return
        if restriction.private:
            raise HttpError(404, "RepoNotFound", f"{layout.repo_type} {layout.repo_id} is not in this cache")
        why = "no token was sent" if not token else "this token has not been granted access"
        if self.access is None:
            why = "this server has no access policy (start it with --auth-upstream or --auth-tokens)"
        raise HttpError(401 if not token else 403, "GatedRepo",
                        f"access to {layout.repo_id} is restricted: {why}")

    def _pick(self, target: Target) -> tuple[RepoLayout, Candidate]:
        """The repo the path names; when ``org/name`` and ``name`` both parse, the one cached."""
        first: tuple[RepoLayout, Candidate] | None = None
        for cand in target.candidates:
            try:
                validate_repo_id(cand.repo_id)
            except InvalidInput:
                continue
            layout = RepoLayout(self.cache_dir, target.repo_type, cand.repo_id)
            if layout.folder.is_dir():
                return layout, cand
            first = first or (layout, cand)
        if first is None:
            if not target.candidates:
                raise HttpError(404, "NotFound", "no such endpoint on this modelcache server")
            raise HttpError(400, "BadRequest", f"invalid repo id {target.candidates[0].repo_id!r}")
        layout, _ = first
        raise HttpError(404, "RepoNotFound", f"{layout.repo_type} {layout.repo_id} is not in this cache")

    def _index(self, layout: RepoLayout, revision: str) -> CommitIndex:
        validate_revision(revision)
        commit = resolve_commit(layout, revision)
        index = self.indexes.get(layout, commit) if commit is not None else None
        if index is None:
            raise HttpError(404, "RevisionNotFound", f"revision {revision!r} of {layout.repo_id} is not in this cache")
        return index

    # -- /api ---------------------------------------------------------------------------------

    def api(self, request: Request, target: Target) -> Response:
        layout, cand = self._pick(target)
        index = self._index(layout, cand.revision)
        if cand.action == "tree":
            return self.tree(request, layout, index, cand.path)
        if cand.path:
            raise HttpError(404, "NotFound", "no such endpoint on this modelcache server")
        return JSONResponse(self.info(layout, index, request.query_params.get("blobs") in _TRUE))

    def info(self, layout: RepoLayout, index: CommitIndex, blobs: bool) -> dict[str, object]:
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
        access = self._access_of(layout)
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
        page, more = index.listing(path, query.get("recursive") in _TRUE, after, self.page_size)
        headers = {}
        if more and page:
            url = next_page_url(request, encode_cursor(str(page[-1]["path"])))
            headers["Link"] = f'<{url}>; rel="next"'
        return JSONResponse(page, headers=headers)

    # -- /resolve -----------------------------------------------------------------------------

    def resolve(self, request: Request, target: Target) -> Response:
        layout, cand = self._pick(target)
        path = cand.path
        index = self._index(layout, cand.revision)
        validate_repo_path(path)
        commit = index.commit
        entry = index.files.get(path)
        if entry is None:
            if index.from_record:
                raise HttpError(404, "EntryNotFound", f"{path} is not a file of {layout.repo_id} at {commit}", commit)
            raise HttpError(
                404, "EntryNotFound", f"{path} is not cached here ({layout.repo_id} at {commit} has no file list)"
            )
        link = layout.snapshot_file(commit, path)
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
        etag = f'"{entry.etag}"'
        headers = {
            "X-Repo-Commit": commit,
            "ETag": etag,
            "X-Linked-Etag": etag,
            "X-Linked-Size": str(entry.size),
            "Accept-Ranges": "bytes",
        }
        background = None
        if self.on_served is not None and request.method == "GET":
            background = BackgroundTask(self._notify, layout, commit)
        if request.method == "GET" and st.st_size <= _SMALL and "range" not in request.headers:
            # Small files (configs, tokenizers) are read in one go on the event loop: a blocking
            # read of a few KiB costs less than the thread hops of a streamed response.
            try:  # O_NOFOLLOW|O_NONBLOCK + S_ISREG: a FIFO swapped in after the stat never blocks the loop
                with os.fdopen(open_regular(real, _SMALL), "rb") as fh:
                    body = fh.read(_SMALL + 1)
            except OSError:
                raise _not_cached(layout, commit, path) from None
            if len(body) == entry.size:
                headers["Last-Modified"] = formatdate(st.st_mtime, usegmt=True)
                return Response(body, headers=headers, media_type="application/octet-stream", background=background)
        response = _BlobResponse(
            real, headers=headers, media_type="application/octet-stream", stat_result=st, background=background
        )
        return WithErrorHeaders(response, _RANGE_ERRORS)  # type: ignore[return-value]

    def _notify(self, layout: RepoLayout, commit: str) -> None:
        try:
            self.on_served(layout, commit)  # type: ignore[misc]
        except Exception:
            log.debug("on_served callback failed", exc_info=True)


def _body_bytes(range_header: str | None, headers: object) -> int:
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


def _valid_repo(repo_id: str) -> bool:
    try:
        validate_repo_id(repo_id)
        return True
    except InvalidInput:
        return False


def _record_entry(layout: RepoLayout, commit: str, path: str) -> FileEntry | None:
    record = read_record(layout.tree_record(commit), commit)
    return record.files.get(path) if record is not None else None


def create_app(
    cache_dir: Path,
    *,
    page_size: int = 1000,
    on_served: OnServed | None = None,
    access: AccessPolicy | None = None,
    mirror: Mirror | None = None,
    log_json: bool = False,
) -> Starlette:
    """The ASGI app serving ``cache_dir`` read-only over the Hugging Face Hub protocol.

    ``page_size`` caps the entries per tree page (the Hub uses 1000); ``on_served(layout,
    commit)`` is called after each file GET (errors it raises are logged and ignored);
    ``access`` decides who may read gated and private repos (none: nobody); ``mirror`` makes
    it a read-through mirror of an upstream Hub.
    """
    handlers = _Handlers(Path(cache_dir), page_size, on_served, access, mirror, log_json)
    return Starlette(routes=[Route("/{rest:path}", handlers.dispatch, methods=_ALL_METHODS)])


def serve(cache_dir: Path, host: str = "127.0.0.1", port: int = 8080, *, header_timeout: float = 10.0,
          keep_alive: float = 5.0, max_connections: int | None = None, **kw: object) -> None:
    """Serve ``cache_dir`` on ``host:port`` until interrupted (blocking). ``kw`` goes to ``create_app``.

    Callers are untrusted: a client must send its request head within ``header_timeout``
    seconds, an idle keep-alive connection is closed after ``keep_alive`` seconds, headers are
    capped at 64 KiB, and above ``max_connections`` (default: well under the fd limit) new
    connections are closed at once (see ``_limits``).
    """
    import uvicorn

    from ._limits import GuardedH11Protocol, default_max_connections, uvicorn_limits

    if kw.get("log_json"):
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        log.propagate = False
    GuardedH11Protocol.header_timeout = header_timeout
    GuardedH11Protocol.max_connections = max_connections or default_max_connections()
    uvicorn.run(create_app(Path(cache_dir), **kw), host=host, port=port, log_level="warning",  # type: ignore[arg-type]
                access_log=False, **uvicorn_limits(keep_alive=keep_alive))  # type: ignore[arg-type]
