"""An HF-compatible, read-only HTTP endpoint over a cache directory.

Point ``HF_ENDPOINT`` at it and ``huggingface_hub`` (``snapshot_download``, ``hf_hub_download``,
``model_info``, ``list_repo_tree``) reads what the cache holds, and nothing else:

- ``GET /api/{models|datasets|spaces}/{repo}[/revision/{rev}]`` → repo info (``?blobs=true``);
- ``GET /api/.../{repo}/tree/{rev}[/{path}]`` → listing, paginated with a ``Link`` header;
- ``HEAD|GET /[datasets/|spaces/]{repo}/resolve/{rev}/{path}`` → the bytes, with ranges;
- ``/healthz``, ``/readyz``, ``/metrics``, ``/modelcache/models``.

Listings show the commit's whole file list (its completeness record); a file the record lists
but the cache does not hold in full is answered ``404 EntryNotFound`` *without*
``X-Repo-Commit``, so the client does not remember it as absent upstream.

Modules: ``_routes`` parses a raw path (pure), ``_reader`` answers from the cache, ``_auth``
decides access, ``mirror`` + ``_stream`` fill misses from an upstream, ``_metrics`` counts,
``_fast`` remembers resolved files and ``_hot`` answers those (public, no range) for the HTTP
protocol itself, before any ASGI work.

The app is a plain ASGI callable with one dispatch, because the raw path (not a router's
decoded one) decides, and a router's middleware layers cost more than the answer to a hit.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import anyio
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.types import Receive, Scope, Send

from ..cache.layout import RepoLayout
from ..errors import GatedRepo, InvalidInput, RepoNotFound, RevisionNotFound
from ..models import models_status
from ..validation import is_commit, validate_revision
from ._access import AccessPolicy, checked_target
from ._auth import Gate
from ._http import HttpError, error_response
from ._metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from ._metrics import Metrics, request_log_line
from ._hot import HotPath
from ._reader import TRUE, NotHere, OnServed, Reader, body_bytes, raw_path_of, valid_repo
from ._routes import Target, parse_target
from ._stream import stream_fill
from .mirror import Mirror, UpstreamUnavailable

__all__ = ["ServeApp", "create_app"]

log = logging.getLogger("modelcache.server")


class ServeApp:
    """The ASGI app: every HTTP request goes through ``dispatch``; ``hot_path`` is for the protocol."""

    def __init__(self, cache_dir: Path, page_size: int, on_served: OnServed | None,
                 access: AccessPolicy | None = None, mirror: Mirror | None = None, log_json: bool = False) -> None:
        self.cache_dir = Path(cache_dir)
        self.gate = Gate(access)
        self.reader = Reader(self.cache_dir, page_size, on_served, self.gate)
        self.mirror = mirror
        self.metrics = Metrics(self.cache_dir, mirror.stats if mirror is not None else None)
        self.log_json = log_json
        self.hot_path = HotPath(self.reader.fast, self.gate, self.metrics, self.reader.note_use, log_json,
                                commits_only=mirror is not None)
        """Answers to remembered public files without a range, for ``_protocol`` (found by this name)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            response = await self.dispatch(Request(scope, receive))
            await response(scope, receive, send)
        elif scope["type"] == "lifespan":
            await _lifespan(receive, send)
        elif scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1000})

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
                lambda: self._public_models(models_status(self.cache_dir, disk=q.get("disk") in TRUE,
                                                          namespace=q.get("namespace"), name=q.get("name"))))
            response = JSONResponse(status, status_code=200)
        elif path == "/readyz":
            kind = "readyz"
            ready = await anyio.to_thread.run_sync(self._cache_usable)
            response = JSONResponse({"ready": ready, **({} if ready else {"reason": "the cache directory is not readable yet"})},
                                    status_code=200 if ready else 503)
        else:
            kind, response = await self._route(request)
        self._account(request, kind, response, started)
        return response

    def _public_models(self, status: dict[str, object]) -> dict[str, object]:
        """What callers (unauthenticated) may see of the model registry: no paths, and nothing of a
        model whose repo is gated or private (or whose access record cannot be read: fail closed)."""
        status = {k: v for k, v in status.items() if k != "cache_dir"}
        shown, hidden = [], 0
        for m in status.get("models", []):  # type: ignore[union-attr]
            try:
                restricted = self.gate.access_of(RepoLayout(self.cache_dir, "model", m["repo_id"])).restricted
            except (InvalidInput, KeyError, TypeError):
                restricted = True
            if restricted:
                hidden += 1
            else:
                shown.append(m)
        status["models"] = shown
        if hidden:
            status["hidden"] = hidden
        return _without_prefix(status, str(self.cache_dir).rstrip("/") + "/")

    def _cache_usable(self) -> bool:
        return self.cache_dir.is_dir() and os.access(self.cache_dir, os.R_OK | os.X_OK)

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
            m.served_bytes.inc(body_bytes(request.headers.get("range"), response.headers))
        if self.log_json:
            log.info(request_log_line(request.method, request.scope["path"], status, kind,
                                      int(response.headers.get("content-length") or 0), started, code))

    async def _route(self, request: Request) -> tuple[str, Response]:
        """(endpoint kind, response) for a request to anything but the server's own endpoints."""
        raw_path = raw_path_of(request.scope)
        kind = "other"
        try:
            if request.method not in ("GET", "HEAD"):
                raise HttpError(405, "MethodNotAllowed", "this modelcache server is read-only: use GET or HEAD")
            target = checked_target(parse_target(raw_path))  # '..'/%2e%2e/%2F refused before anything else
            kind = target.kind
            if kind == "health":
                return kind, JSONResponse({"status": "ok"})
            if kind not in ("resolve", "api"):
                raise HttpError(404, "NotFound", f"this modelcache server has no endpoint {request.scope['path']!r}")
            return kind, await self._from_cache(request, raw_path, target)
        except HttpError as err:
            return kind, error_response(err)
        except InvalidInput as err:
            return kind, error_response(HttpError(400, "BadRequest", err.message))
        except Exception:  # never leak a traceback to the client; log it here
            log.exception("internal error serving %r", raw_path)
            return kind, error_response(HttpError(500, "InternalError", "internal error in the modelcache server"))

    async def _from_cache(self, request: Request, raw_path: bytes, target: Target) -> Response:
        """A ``resolve`` or ``api`` answer: remembered hit, else the slow path (a mirror fills misses)."""
        if self.mirror is not None:
            await self._mirror_refresh(request, target)
        if target.kind == "resolve" and (hit := self.reader.fast.get(raw_path)) is not None:
            await self.gate.authorize(request, target.kind, hit.layout, hit.cand)
            self.metrics.hits.inc()
            return self.reader.answer(request, hit)
        # the slow path walks folders, reads records and may hash a record-less snapshot:
        # in a worker thread, so no client (nor /healthz) ever waits on another's disk work
        layout, cand = await anyio.to_thread.run_sync(self.reader.pick, target)
        await self.gate.authorize(request, target.kind, layout, cand)
        if target.kind == "api":
            return await anyio.to_thread.run_sync(self.reader.api, request, target)
        try:
            response = await anyio.to_thread.run_sync(self.reader.resolve, request, target)
            self.metrics.hits.inc()
            return response
        except NotHere as miss:
            self.metrics.misses.inc()
            if self.mirror is None or miss.entry is None:
                raise
            return await stream_fill(self.mirror, request, miss.layout, miss.snapshot_commit, miss.entry,
                                     lambda: self.reader.resolve(request, target))

    async def _mirror_refresh(self, request: Request, target: Target) -> None:
        """Ask the upstream what the revision is now (TTL-cached); write its record here."""
        mirror = self.mirror
        assert mirror is not None
        cands = [c for c in target.candidates if valid_repo(c.repo_id)]
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
            # the upstream answered with the mirror's token: for a repo recorded private, only a
            # caller who may see it learns that it exists (else: 404 RepoNotFound, as for no repo)
            await self.gate.authorize(request, "api", layout, cand)
            raise HttpError(404, "RevisionNotFound", exc.message) from None
        except GatedRepo as exc:
            await self.gate.authorize(request, "api", layout, cand)
            raise HttpError(403, "GatedRepo", exc.message) from None
        except UpstreamUnavailable as exc:
            raise HttpError(503, "UpstreamUnavailable", exc.message, retry_after=exc.retry_after) from None


def _without_prefix(value: object, prefix: str) -> object:
    """``value`` with every string's leading ``prefix`` (the cache's path) cut: paths relative to the cache."""
    if isinstance(value, str):
        return value[len(prefix):] if value.startswith(prefix) else value
    if isinstance(value, dict):
        return {k: _without_prefix(v, prefix) for k, v in value.items()}
    if isinstance(value, list):
        return [_without_prefix(v, prefix) for v in value]
    return value


def create_app(
    cache_dir: Path,
    *,
    page_size: int = 1000,
    on_served: OnServed | None = None,
    access: AccessPolicy | None = None,
    mirror: Mirror | None = None,
    log_json: bool = False,
) -> ServeApp:
    """The ASGI app serving ``cache_dir`` read-only over the Hugging Face Hub protocol.

    ``page_size`` caps the entries per tree page (the Hub uses 1000); ``on_served(layout,
    commit)`` is called after each file GET (errors it raises are logged and ignored);
    ``access`` decides who may read gated and private repos (none: nobody); ``mirror`` makes
    it a read-through mirror of an upstream Hub.
    """
    return ServeApp(Path(cache_dir), page_size, on_served, access, mirror, log_json)


async def _lifespan(receive: Receive, send: Send) -> None:
    """Nothing to start or stop (the caches fill as requests come): acknowledge both."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
