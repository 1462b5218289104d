"""Settings: one typed dataclass, resolved from the environment exactly as huggingface_hub does.

``Settings.from_env(environ, **overrides)`` is called once, at an entry point (the CLI, the
server, a user's ``ModelCache()``); nothing else in the package reads ``os.environ``.

Resolution (huggingface_hub's rules, checked against its ``constants.py``):

- cache dir: ``HF_HUB_CACHE`` > ``HUGGINGFACE_HUB_CACHE`` > ``$HF_HOME/hub`` >
  ``$XDG_CACHE_HOME/huggingface/hub`` > ``~/.cache/huggingface/hub`` (``~`` and ``$VARS`` expanded)
- endpoint: ``HF_ENDPOINT`` (trailing ``/`` stripped) > ``https://huggingface.co``
- token: see ``tokens.py`` (``--token-file`` > ``HF_TOKEN`` > ``HUGGING_FACE_HUB_TOKEN`` >
  ``HF_TOKEN_PATH`` > a mounted Secret directory > ``$HF_HOME/token``); whitespace stripped;
  files read each time a token is needed, so a rotated Secret is picked up without a restart
- offline: ``HF_HUB_OFFLINE`` (or ``TRANSFORMERS_OFFLINE``) in 1/ON/YES/TRUE
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field, fields, replace
from typing import Any
from pathlib import Path

from .errors import InvalidInput
from .tokens import TokenSource

__all__ = ["DEFAULTS", "DEFAULT_ENDPOINT", "Network", "Settings", "TokenSource", "parse_duration", "parse_size"]  # TokenSource: re-export

DEFAULT_ENDPOINT = "https://huggingface.co"
DEFAULT_SECRET_DIR = "/var/run/secrets/huggingface"
_TRUE = {"1", "ON", "YES", "TRUE"}


_UNITS = {"": 1, "B": 1, "K": 1000, "KB": 1000, "KIB": 1024, "M": 1000**2, "MB": 1000**2, "MIB": 1024**2,
          "G": 1000**3, "GB": 1000**3, "GIB": 1024**3, "T": 1000**4, "TB": 1000**4, "TIB": 1024**4}


def parse_size(value: int | str, what: str = "size") -> int:
    """``16MiB``, ``1.5GB``, ``4096`` → bytes."""
    if isinstance(value, int):
        return value
    text = value.strip().upper().replace(" ", "")
    num = text.rstrip("KMGTIB")
    unit = text[len(num):]
    try:
        if unit not in _UNITS or not num:
            raise ValueError
        return int(float(num) * _UNITS[unit])
    except ValueError:
        raise InvalidInput(f"invalid {what} {value!r}", "give bytes or a size such as 512MiB, 16MB, 2GiB") from None


_DURATION = {"": 1, "S": 1, "M": 60, "H": 3600, "D": 86400, "W": 7 * 86400}


def parse_duration(value: float | str, what: str = "duration") -> float:
    """``90``, ``30m``, ``12h``, ``7d``, ``2w`` → seconds."""
    if isinstance(value, (int, float)):
        return float(value)
    text = value.strip().upper()
    num, unit = text.rstrip("SMHDW"), text[len(text.rstrip("SMHDW")):]
    try:
        if unit not in _DURATION or not num or float(num) < 0:
            raise ValueError
        return float(num) * _DURATION[unit]
    except ValueError:
        raise InvalidInput(f"invalid {what} {value!r}", "give seconds or e.g. 30m, 12h, 7d, 2w") from None


def _is_true(value: str | None) -> bool:
    return value is not None and value.strip().upper() in _TRUE


def _expand(path: str, environ: Mapping[str, str]) -> str:
    expanded = os.path.expanduser(path)
    # os.path.expandvars reads os.environ; expand from the mapping we were given instead.
    for key, val in environ.items():
        expanded = expanded.replace("${" + key + "}", val).replace("$" + key, val)
    return expanded


@dataclass(frozen=True)
class Network:
    """How to reach the endpoint: a proxy (``HTTPS_PROXY``…), hosts that bypass it (``NO_PROXY``),
    and a CA bundle for TLS (``REQUESTS_CA_BUNDLE`` / ``SSL_CERT_FILE``), as requests and
    huggingface_hub honour them. Read once, at the entry point."""

    proxy: str | None = None
    no_proxy: tuple[str, ...] = ()
    ca_bundle: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Network:
        """Proxy, ``NO_PROXY`` hosts and CA bundle from the usual environment variables (first set wins)."""
        def first(*names: str) -> str | None:
            return next((env[n] for n in names if env.get(n)), None)

        no_proxy = first("NO_PROXY", "no_proxy") or ""
        return cls(
            proxy=first("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"),
            no_proxy=tuple(h.strip().lower() for h in no_proxy.split(",") if h.strip()),
            ca_bundle=first("REQUESTS_CA_BUNDLE", "SSL_CERT_FILE", "CURL_CA_BUNDLE"),
        )

    def proxy_for(self, host: str) -> str | None:
        """The proxy to use for ``host`` (never for loopback or a ``NO_PROXY`` match)."""
        host = host.lower()
        if not self.proxy or host in ("localhost", "127.0.0.1", "::1") or host.startswith("127."):
            return None
        for pattern in self.no_proxy:
            if pattern == "*" or host == pattern.lstrip(".") or host.endswith("." + pattern.lstrip(".")):
                return None
        return self.proxy


@dataclass(frozen=True)
class Settings:
    """Everything modelcache needs to know about where and how it works."""

    cache_dir: Path
    """Root of the huggingface_hub cache (``HF_HUB_CACHE``)."""
    endpoint: str = DEFAULT_ENDPOINT
    """Base URL of the Hub or a compatible server, no trailing slash."""
    token: TokenSource = field(default_factory=TokenSource)
    """Where the access token comes from; read lazily."""
    offline: bool = False
    """Never touch the network (``HF_HUB_OFFLINE``)."""
    connections: int = 16
    """Parallel HTTP connections for downloads (ranges of big files); small files, which are
    latency-bound, are fetched by up to twice as many at once."""
    timeout: float = 30.0
    """Seconds without progress before a request is retried (``HF_HUB_DOWNLOAD_TIMEOUT``)."""
    retries: int = 5
    """How many times in a row a transient failure is retried before giving up."""
    retry_base: float = 0.5
    """Seconds before the first retry; doubled per attempt, with full jitter (file bodies and API calls)."""
    retry_cap: float = 30.0
    """The longest wait between two retries (a ``Retry-After`` from the server wins)."""
    chunk_size: int = 8 * 1024 * 1024
    """Bytes per ranged request; big files are fetched by several connections at once."""
    checkpoint_bytes: int = 8 * 1024 * 1024
    """Resume granularity: progress is recorded every this many new bytes of a file (whatever
    the number of connections on it) and every second, so a killed run refetches at most about
    this much per file in flight (``MODELCACHE_CHECKPOINT_BYTES``)."""
    small_file_bytes: int = 1024 * 1024
    """Files up to this size are fetched whole into memory, verified there and written as their
    blob in one step — no partial, resume state or lock (a killed run refetches them, two
    processes may both fetch one); bigger files take the resumable, locked path. 0: every file
    takes that path (``MODELCACHE_SMALL_FILE_BYTES``; at most 16 MiB)."""
    lock_stale_after: float = 30.0
    """Seconds without a heartbeat after which another host may take over a download lock."""
    allow_insecure_token: bool = False
    """Send the token over plain HTTP to a non-loopback endpoint (off: it would travel in clear)."""
    network: Network = field(default_factory=Network)
    """Proxy and CA bundle from the environment."""
    raw_http: bool = True
    """File bodies over modelcache's minimal socket client (faster); ``MODELCACHE_RAW_HTTP=0``: httpx."""
    api_deadline: float = 120.0
    """Overall seconds one API call (revision info, a file-list page) may take, retries included:
    429 (``Retry-After`` honoured), 5xx, dropped connections and timeouts are retried with backoff
    and jitter until then."""
    api_max_bytes: int = 64 * 1024 * 1024
    """The largest API (JSON) answer accepted; a bigger or endless one fails with a clear error."""

    def __post_init__(self) -> None:
        """Every way to make Settings (the constructor, ``from_env``, ``with_overrides``) checks the same."""
        if not isinstance(self.cache_dir, Path):
            if not isinstance(self.cache_dir, (str, os.PathLike)):
                raise InvalidInput(f"invalid cache_dir {self.cache_dir!r}", "give a path")
            object.__setattr__(self, "cache_dir", Path(self.cache_dir))
        if not self.endpoint.startswith(("http://", "https://")):
            raise InvalidInput(f"invalid endpoint {self.endpoint!r}", "give a URL such as https://huggingface.co")
        object.__setattr__(self, "endpoint", self.endpoint.rstrip("/"))
        if not 1 <= self.connections <= 256:
            raise InvalidInput(f"invalid --connections {self.connections}", "give a number from 1 to 256")
        if not 64 * 1024 <= self.chunk_size <= 1024**3:
            raise InvalidInput(f"invalid --chunk-size {self.chunk_size}", "give a size from 64KiB to 1GiB, e.g. 8MiB")
        if not 0 <= self.small_file_bytes <= 16 * 1024 * 1024:
            raise InvalidInput(f"invalid small-file size {self.small_file_bytes}", "give 0 to 16MiB in bytes")
        if self.checkpoint_bytes < 4096:
            raise InvalidInput(f"invalid checkpoint size {self.checkpoint_bytes}", "give at least 4096 bytes")
        if not self.timeout > 0:
            raise InvalidInput(f"invalid timeout {self.timeout!r}", "give seconds, e.g. 30")
        if self.retries < 0:
            raise InvalidInput(f"invalid retries {self.retries}", "give 0 or more")
        if not 0 <= self.retry_base <= self.retry_cap:
            raise InvalidInput(f"invalid retry backoff {self.retry_base}..{self.retry_cap}", "give 0 <= base <= cap seconds")
        if not self.lock_stale_after > 0:
            raise InvalidInput(f"invalid lock_stale_after {self.lock_stale_after!r}", "give seconds, e.g. 30")
        bundle = self.network.ca_bundle
        if bundle and not os.path.exists(bundle):
            raise InvalidInput(f"the CA bundle {bundle} does not exist",
                               "fix REQUESTS_CA_BUNDLE / SSL_CERT_FILE / CURL_CA_BUNDLE, or unset it")

    def with_overrides(self, **changes: object) -> Settings:
        """A copy with ``changes`` (None values ignored), validated like the constructor."""
        changes = {k: v for k, v in changes.items() if v is not None}
        if isinstance(changes.get("chunk_size"), str):
            changes["chunk_size"] = parse_size(changes["chunk_size"], "--chunk-size")  # type: ignore[arg-type]
        return replace(self, **changes)  # type: ignore[arg-type]

    @classmethod
    def from_process_env(cls, **overrides: object) -> Settings:
        """``from_env(os.environ)``: for entry points (the CLI, ``ModelCache()`` with no settings)."""
        return cls.from_env(os.environ, **overrides)  # type: ignore[arg-type]

    @classmethod
    def from_env(
        cls,
        environ: Mapping[str, str],
        *,
        cache_dir: str | os.PathLike[str] | None = None,
        endpoint: str | None = None,
        token_file: str | os.PathLike[str] | None = None,
        offline: bool | None = None,
        connections: int | None = None,
        chunk_size: int | str | None = None,
        allow_insecure_token: bool | None = None,
    ) -> Settings:
        """The settings from ``environ`` as huggingface_hub resolves them; keyword overrides (CLI flags) win.

        Raises ``InvalidInput`` for an unparsable value. Does not read the token, only where it is.
        """
        env = dict(environ)
        hf_home = env.get("HF_HOME") or os.path.join(
            env.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "huggingface"
        )
        hf_home = _expand(hf_home, env)
        if cache_dir is None:
            cache_dir = env.get("HF_HUB_CACHE") or env.get("HUGGINGFACE_HUB_CACHE") or os.path.join(hf_home, "hub")
        cache_path = Path(_expand(str(cache_dir), env))

        ep = endpoint or env.get("HF_ENDPOINT") or DEFAULT_ENDPOINT

        if token_file is not None:
            token = TokenSource(path=Path(token_file), origin="--token-file")
        elif env.get("HF_TOKEN"):
            token = TokenSource(value=env["HF_TOKEN"], origin="HF_TOKEN")
        elif env.get("HUGGING_FACE_HUB_TOKEN"):
            token = TokenSource(value=env["HUGGING_FACE_HUB_TOKEN"], origin="HUGGING_FACE_HUB_TOKEN")
        elif env.get("HF_TOKEN_PATH"):
            token = TokenSource(path=Path(_expand(env["HF_TOKEN_PATH"], env)), origin="HF_TOKEN_PATH")
        elif env.get("MODELCACHE_TOKEN_DIR") or Path(DEFAULT_SECRET_DIR).is_dir():
            secret_dir = env.get("MODELCACHE_TOKEN_DIR") or DEFAULT_SECRET_DIR
            token = TokenSource(path=Path(_expand(secret_dir, env)), origin="mounted Secret")
        else:
            token = TokenSource(path=Path(hf_home) / "token", origin="HF_HOME/token")

        if offline is None:
            offline = _is_true(env.get("HF_HUB_OFFLINE") or env.get("TRANSFORMERS_OFFLINE"))

        timeout = _DEFAULTS["timeout"]
        if env.get("HF_HUB_DOWNLOAD_TIMEOUT"):
            try:
                timeout = float(env["HF_HUB_DOWNLOAD_TIMEOUT"])
            except ValueError:
                raise InvalidInput(
                    f"invalid HF_HUB_DOWNLOAD_TIMEOUT {env['HF_HUB_DOWNLOAD_TIMEOUT']!r}", "give seconds, e.g. 30"
                ) from None
        checkpoint = _DEFAULTS["checkpoint_bytes"]
        if env.get("MODELCACHE_CHECKPOINT_BYTES"):
            try:
                checkpoint = max(4096, int(env["MODELCACHE_CHECKPOINT_BYTES"]))
            except ValueError:
                raise InvalidInput("invalid MODELCACHE_CHECKPOINT_BYTES", "give a number of bytes") from None
        chunk = parse_size(chunk_size, "--chunk-size") if chunk_size is not None else _DEFAULTS["chunk_size"]
        small = _DEFAULTS["small_file_bytes"]
        if env.get("MODELCACHE_SMALL_FILE_BYTES"):
            try:
                small = int(env["MODELCACHE_SMALL_FILE_BYTES"])
            except ValueError:
                raise InvalidInput("invalid MODELCACHE_SMALL_FILE_BYTES", "give a number of bytes (0 to 16MiB)") from None
        return cls(
            small_file_bytes=small,
            cache_dir=cache_path,
            chunk_size=chunk,
            endpoint=ep,
            token=token,
            offline=bool(offline),
            connections=connections if connections is not None else _DEFAULTS["connections"],
            timeout=timeout,
            checkpoint_bytes=checkpoint,
            allow_insecure_token=bool(allow_insecure_token),
            network=Network.from_env(env),
            raw_http=env.get("MODELCACHE_RAW_HTTP", "1").strip().lower() not in ("0", "false", "no", "off"),
        )


_DEFAULTS: dict[str, Any] = {f.name: f.default for f in fields(Settings) if f.default is not MISSING}
"""The dataclass's own defaults: ``from_env`` starts from these (one place for each default)."""

DEFAULTS: Mapping[str, Any] = dict(_DEFAULTS)
"""Read-only view of the defaults, for lower layers' own keyword defaults (the engine, the client)."""
