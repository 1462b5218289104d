"""The Hub protocol client: revision → commit, commit → file list, file → URL.

All network I/O goes through an injectable ``httpx.Client``. The token is attached only to
requests for the endpoint's own origin, and only over HTTPS or to a loopback host (plain
HTTP elsewhere needs ``allow_insecure_token``); it never appears in an error message.
"""

from __future__ import annotations

import ipaddress
import json
import os
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import quote, urljoin, urlsplit

import httpx

from ..protocol import FileEntry
from ..errors import (
    AuthError,
    EndpointUnreachable,
    GatedRepo,
    InvalidInput,
    ProtocolError,
    RepoNotFound,
    TransientError,
)
from ..validation import is_commit, validate_repo_id, validate_repo_type, validate_revision
from ..settings import DEFAULTS, Network, Settings
from ..tokens import TokenSource
from .rawhttp import RawPool
from .responses import error_for_response, parse_retry_after
from .retry import Backoff, Deadline, RetryPolicy, WaitCallback

__all__ = ["HubClient", "RevisionInfo", "error_for_response", "origin_of", "parse_retry_after"]

USER_AGENT = "modelcache/0.1"
_API_PREFIX = {"model": "models", "dataset": "datasets", "space": "spaces"}
_URL_PREFIX = {"model": "", "dataset": "datasets/", "space": "spaces/"}
MAX_TREE_PAGES = 10_000
DEFAULT_MAX_JSON = 64 * 1024 * 1024
CONNECT_RETRIES = 2
"""An endpoint that refuses connections is retried this often only (then: unreachable, use the cache)."""


def origin_of(url: str) -> tuple[str, str, int | None]:
    """``(scheme, lowercase host, port)`` of ``url``, the port defaulted for http/https."""
    parts = urlsplit(url)
    port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
    return parts.scheme, (parts.hostname or "").lower(), port


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class RevisionInfo:
    """A revision resolved to its commit, with the repo's gated and private flags."""

    repo_id: str
    revision: str
    commit: str
    gated: bool = False
    private: bool = False


class HubClient:
    """Speaks the Hub's HTTP API to one endpoint."""

    def __init__(
        self,
        endpoint: str,
        token: TokenSource | None = None,
        *,
        http: httpx.Client | None = None,
        timeout: float = DEFAULTS["timeout"],
        connections: int = DEFAULTS["connections"],
        allow_insecure_token: bool = False,
        network: Network | None = None,
        raw_http: bool = True,
        retry: RetryPolicy | None = None,
        max_json_bytes: int = DEFAULT_MAX_JSON,
    ) -> None:
        self.endpoint = endpoint.rstrip("/")
        self.retry = retry or RetryPolicy()
        """How API calls are retried (429/5xx/drops/timeouts), within an overall deadline per call."""
        self.max_json_bytes = max_json_bytes
        """An API answer bigger than this is refused (an endless body never exhausts memory)."""
        self._origin = origin_of(self.endpoint)
        self._token = token or TokenSource()
        self._allow_insecure = allow_insecure_token
        self.token_withheld = False  # a token exists but the transport is unsafe: it was not sent
        network = network or Network()
        self.network = network
        self._raw_enabled = raw_http and http is None  # an injected client (tests, mocks) sees every request
        self._raw: RawPool | None = None
        self._raw_lock = threading.Lock()
        self._timeout = timeout
        self._tls: ssl.SSLContext | None = None
        proxy = network.proxy_for(self._origin[1])
        limits = httpx.Limits(max_connections=connections + 4, max_keepalive_connections=connections + 4)
        transport: dict[str, object] = {}
        if http is None and proxy is None:  # (a proxy's transports are built at once, by httpx)
            transport = dict(
                transport=_Lazy(lambda: httpx.HTTPTransport(verify=self.tls_context(), limits=limits)),
                # plain http never uses a TLS context: none is loaded for it (a redirect to https
                # goes through ``transport`` above, verified)
                mounts={"http://": _Lazy(lambda: httpx.HTTPTransport(verify=_no_tls(), limits=limits))},
            )
        self.http = http or httpx.Client(
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
            limits=limits,
            headers={"User-Agent": USER_AGENT},
            follow_redirects=False,
            trust_env=False,  # the environment was read once, into ``network``
            proxy=proxy,
            verify=self.tls_context() if proxy is not None else True,
            **transport,  # type: ignore[arg-type]
        )

    @classmethod
    def for_settings(cls, settings: Settings, endpoint: str | None = None, **kw: object) -> HubClient:
        """A client for ``settings`` (its endpoint unless another is given): token, timeouts, proxy."""
        kw.setdefault("timeout", settings.timeout)
        kw.setdefault("connections", settings.connections)
        kw.setdefault("raw_http", settings.raw_http)
        kw.setdefault("retry", RetryPolicy(deadline=settings.api_deadline,
                                           backoff=Backoff(base=settings.retry_base, cap=settings.retry_cap,
                                                           attempts=1_000_000)))
        kw.setdefault("max_json_bytes", settings.api_max_bytes)
        return cls(endpoint or settings.endpoint, settings.token, allow_insecure_token=settings.allow_insecure_token,
                   network=settings.network, **kw)  # type: ignore[arg-type]

    def raw_pool_for(self, url: str) -> RawPool | None:
        """The raw-socket pool for a file body at ``url``, or None (proxied, or disabled)."""
        if not self._raw_enabled or self.network.proxy_for(urlsplit(url).hostname or ""):
            return None
        if self._raw is None:
            with self._raw_lock:  # every connection thread asks at once: build one pool, once
                if self._raw is None:
                    self._raw = RawPool(self._timeout, tls_factory=self.tls_context)
        return self._raw

    def tls_context(self) -> ssl.SSLContext:
        """The one TLS context of this client's https connections, API calls and file bodies alike
        (``Network.ca_bundle``, else certifi's CAs as httpx uses). Built on first use (~25 ms of
        loading CAs), so a run against a plain-http endpoint (an in-cluster mirror) never pays it."""
        if self._tls is None:
            with self._raw_lock:
                if self._tls is None:
                    self._tls = _tls_context(self.network.ca_bundle)
        return self._tls

    def close(self) -> None:
        """Close the HTTP clients (the httpx client and the raw connection pool)."""
        self.http.close()
        if self._raw is not None:
            self._raw.close()

    # -- auth ------------------------------------------------------------------------------
    def auth_headers(self, url: str) -> dict[str, str]:
        """``Authorization`` for ``url`` — only for the endpoint's origin over a safe transport."""
        scheme, host, port = origin_of(url)
        if (scheme, host, port) != self._origin:
            return {}
        if scheme != "https" and not _is_loopback(host) and not self._allow_insecure:
            self.token_withheld = self._token.configured and self._token.get() is not None
            return {}
        token = self._token.get()
        return {"Authorization": f"Bearer {token}"} if token else {}

    # -- requests ---------------------------------------------------------------------------
    def request(self, method: str, url: str, *, headers: dict[str, str] | None = None, what: str = "request",
                repo_id: str = "", revision: str | None = None, deadline: Deadline | None = None,
                **kw: object) -> httpx.Response:
        """One request, following redirects by hand (dropping the token across origins, and only
        to http/https). The body is read (at most ``max_json_bytes``, within ``deadline``)."""
        deadline = deadline or self.retry.start()
        for _ in range(6):
            hdrs = {**(headers or {}), **self.auth_headers(url)}
            left = deadline.remaining()
            if left <= 0:
                raise TransientError(f"{what} of {repo_id}: no answer within {deadline.seconds:.0f}s",
                                     "the endpoint is too slow; retry later")
            timeout = httpx.Timeout(min(self._timeout, left), connect=min(self._timeout, 10.0, left))
            try:
                req = self.http.build_request(method, url, headers=hdrs, timeout=timeout, **kw)  # type: ignore[arg-type]
                resp = self.http.send(req, stream=True)
            except httpx.ConnectError as exc:
                raise EndpointUnreachable(
                    f"cannot connect to {_host_of(url)}: {_reason(exc)}",
                    "check HF_ENDPOINT / --endpoint and the network; offline? use --offline",
                ) from None
            except (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError) as exc:
                raise TransientError(f"{what} of {repo_id}: {_reason(exc)}", "the connection failed; retry") from None
            except httpx.HTTPError as exc:
                raise ProtocolError(f"{what} of {repo_id}: {_reason(exc)}", "is the endpoint HF-compatible?") from None
            try:
                if resp.is_redirect and "Location" in resp.headers:
                    try:
                        url = urljoin(url, resp.headers["Location"])
                        urlsplit(url).port  # noqa: B018 - a port out of range or not a number raises here
                    except ValueError:
                        raise ProtocolError(
                            f"{what} of {repo_id}: the endpoint redirected to a URL that does not parse "
                            f"({resp.headers['Location'][:100]!r})", "is the endpoint HF-compatible?") from None
                    if urlsplit(url).scheme not in ("http", "https"):
                        raise ProtocolError(
                            f"{what} of {repo_id}: the endpoint redirected to a non-HTTP URL ({urlsplit(url).scheme}:)",
                            "refusing to follow it; is the endpoint trustworthy?",
                        )
                    continue
                self._read_bounded(resp, what, repo_id, deadline)
            finally:
                resp.close()
            if resp.status_code >= 400:
                raise self._explain(error_for_response(resp, what, repo_id, revision))
            return resp
        raise ProtocolError(f"too many redirects for {what} of {repo_id}", "is the endpoint HF-compatible?")

    def _read_bounded(self, resp: httpx.Response, what: str, repo_id: str, deadline: Deadline) -> None:
        """Read the body into ``resp`` — at most ``max_json_bytes``, and not past ``deadline``."""
        buf = bytearray()
        try:
            for piece in resp.iter_bytes():
                buf += piece
                if len(buf) > self.max_json_bytes:
                    raise ProtocolError(
                        f"the endpoint's answer for {what} of {repo_id} is larger than "
                        f"{self.max_json_bytes // (1024 * 1024)} MiB",
                        "refusing it; is the endpoint HF-compatible?",
                    )
                if deadline.expired:
                    raise TransientError(f"{what} of {repo_id}: the answer did not arrive within "
                                         f"{deadline.seconds:.0f}s", "the endpoint is too slow; retry later")
        except (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError) as exc:
            raise TransientError(f"{what} of {repo_id}: {_reason(exc)}", "the connection failed; retry") from None
        except httpx.HTTPError as exc:
            raise ProtocolError(f"{what} of {repo_id}: {_reason(exc)}", "is the endpoint HF-compatible?") from None
        resp._content = bytes(buf)

    def call(self, url: str, *, on_wait: WaitCallback | None = None, **kw: object) -> httpx.Response:
        """``GET url`` as an API call: retried on 429 (``Retry-After`` honoured), 5xx, dropped
        connections and timeouts, with backoff and jitter, all within the policy's deadline."""
        policy = self.retry
        deadline = policy.start()
        attempt = connects = 0
        notify = on_wait or policy.on_wait
        while True:
            try:
                return self.request("GET", url, deadline=deadline, **kw)  # type: ignore[arg-type]
            except TransientError as exc:
                if isinstance(exc, EndpointUnreachable):
                    connects += 1
                    if connects > CONNECT_RETRIES:
                        raise
                wait = policy.backoff.delay(attempt, exc.retry_after)
                attempt += 1
                if wait >= deadline.remaining():
                    if exc.retry_after is not None and exc.retry_after >= deadline.remaining():
                        exc.message += f" (it asks to retry after {exc.retry_after:.0f}s, past the deadline)"
                    elif attempt > 1:
                        exc.message += f" (gave up after {attempt} attempts in {deadline.seconds:.0f}s)"
                    raise
                if notify is not None:
                    notify(exc.message, wait)
                policy.sleep(wait)

    def _explain(self, err: Exception) -> Exception:
        """Say so when a token exists but was not sent (plain HTTP to a non-loopback host)."""
        if self.token_withheld and isinstance(err, (RepoNotFound, AuthError, GatedRepo)):
            err.hint = (f"a token is configured but was NOT sent: {self.endpoint} is plain HTTP and not loopback; "
                        "use https, or pass --allow-insecure-token if the network is trusted")
        return err

    def _json(self, url: str, **kw: object) -> tuple[object, httpx.Response]:
        resp = self.call(url, **kw)  # type: ignore[arg-type]
        try:
            return json.loads(resp.content), resp
        except (ValueError, RecursionError):
            raise ProtocolError(f"the endpoint did not answer JSON at {_path_of(url)}", "is the endpoint HF-compatible?") from None

    # -- API --------------------------------------------------------------------------------
    def revision_info(self, repo_type: str, repo_id: str, revision: str, *,
                      on_wait: WaitCallback | None = None) -> RevisionInfo:
        """Resolve ``revision`` (branch, tag or commit) of a repo to its commit.

        Raises ``InvalidInput`` for a bad repo type, id or revision, the ``HubError`` family for a
        "no" (``RepoNotFound``, ``RevisionNotFound``, ``GatedRepo``, ``AuthError``, ``ProtocolError``),
        ``TransientError`` when retries ran out. Blocks while retrying (``on_wait`` is told).
        """
        validate_repo_type(repo_type)
        validate_repo_id(repo_id)
        validate_revision(revision)
        url = f"{self.endpoint}/api/{_API_PREFIX[repo_type]}/{repo_id}/revision/{quote(revision, safe='')}"
        data, _ = self._json(url, what=f"revision {revision}", repo_id=repo_id, revision=revision, on_wait=on_wait)
        sha = data.get("sha") if isinstance(data, dict) else None
        if not isinstance(sha, str) or not is_commit(sha):
            raise ProtocolError(f"the endpoint gave no valid commit for {repo_id}@{revision}", "is it HF-compatible?")
        gated = data.get("gated", False)
        return RevisionInfo(repo_id, revision, sha, gated=bool(gated) and gated != "false",
                            private=data.get("private") is True)

    def list_files(self, repo_type: str, repo_id: str, commit: str, *,
                   on_wait: WaitCallback | None = None) -> list[FileEntry]:
        """Every file of the commit, following ``Link: rel=next`` pages on the same origin."""
        url: str | None = (
            f"{self.endpoint}/api/{_API_PREFIX[repo_type]}/{repo_id}/tree/{quote(commit, safe='')}"
            "?recursive=true&expand=false"
        )
        entries: list[FileEntry] = []
        for _ in range(MAX_TREE_PAGES):
            if url is None:
                return entries
            data, resp = self._json(url, what="file list", repo_id=repo_id, revision=commit, on_wait=on_wait)
            if not isinstance(data, list):
                raise ProtocolError(f"the file list of {repo_id} is not a JSON list", "is the endpoint HF-compatible?")
            for item in data:
                if isinstance(item, dict) and item.get("type") == "file":
                    try:
                        entries.append(FileEntry.from_tree_item(item))
                    except InvalidInput as exc:
                        raise ProtocolError(f"the upstream's file list is unsafe or malformed: {exc.message}",
                                            "refusing it; report it to the endpoint's operator") from None
            nxt = resp.links.get("next", {}).get("url")
            if nxt:
                nxt = urljoin(url, nxt)
                if origin_of(nxt) != self._origin:
                    raise ProtocolError("the file list's next page points to another origin", "refusing to follow it")
            url = nxt
        raise ProtocolError(f"the file list of {repo_id} has too many pages", "is the endpoint HF-compatible?")

    def file_url(self, repo_type: str, repo_id: str, commit: str, path: str) -> str:
        """The ``resolve`` URL of ``path`` at ``commit``. No I/O, no validation."""
        return f"{self.endpoint}/{_URL_PREFIX[repo_type]}{repo_id}/resolve/{commit}/{quote(path, safe='/')}"

    def head_file(self, repo_type: str, repo_id: str, revision: str, path: str) -> httpx.Response:
        """``HEAD …/resolve/{rev}/{path}`` (raises the mapped error on 4xx/5xx; redirects not followed)."""
        url = self.file_url(repo_type, repo_id, quote(revision, safe=""), path)
        headers = {"Accept-Encoding": "identity", **self.auth_headers(url)}
        try:
            resp = self.http.request("HEAD", url, headers=headers)
        except httpx.HTTPError as exc:
            raise EndpointUnreachable(f"cannot reach {_host_of(url)}: {_reason(exc)}", "check the endpoint") from None
        if resp.status_code >= 400:
            raise self._explain(error_for_response(resp, path, repo_id, revision, repo_known=True))
        return resp

    def whoami(self) -> dict[str, object]:
        """The endpoint's ``whoami-v2`` answer for our token (``{}`` when it is not a JSON object).

        Raises a ``HubError`` when the token is missing or refused.
        """
        data, _ = self._json(f"{self.endpoint}/api/whoami-v2", what="whoami", repo_id="(token)")
        return data if isinstance(data, dict) else {}


class _Lazy(httpx.BaseTransport):
    """A transport built on its first request (see ``HubClient.tls_context``)."""

    def __init__(self, build: Callable[[], httpx.BaseTransport]) -> None:
        self._build = build
        self._transport: httpx.BaseTransport | None = None
        self._lock = threading.Lock()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        transport = self._transport
        if transport is None:
            with self._lock:
                if self._transport is None:
                    self._transport = self._build()
                transport = self._transport
        return transport.handle_request(request)

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()


def _no_tls() -> ssl.SSLContext:
    """What the plain-http transport is given for ``verify`` (httpx wants a context; it never uses
    it for http:// URLs). Verification stays on: were it ever used, it trusts no CA at all."""
    return ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)


def _tls_context(ca_bundle: str | None) -> ssl.SSLContext:
    """The CA bundle (a file or a folder) as a context; certifi's CAs without one (as httpx).
    ``Settings`` has checked that a configured bundle exists: a missing one is an error there,
    not a silent fallback to the system CAs here."""
    if not ca_bundle:
        return httpx.create_ssl_context(trust_env=False)
    if os.path.isdir(ca_bundle):
        return ssl.create_default_context(capath=ca_bundle)
    return ssl.create_default_context(cafile=ca_bundle)


def _host_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"


def _path_of(url: str) -> str:
    return urlsplit(url).path


def _reason(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0][:200]

