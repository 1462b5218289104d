"""What ``k8s render`` needs to know: one typed, validated, immutable dataclass.

Everything here is checked when the object is made (``__post_init__``), so the manifest
builders never see a bad name, size, path or command. No I/O: the revision is already a
commit and the size already known when a ``RenderOptions`` exists (``plan.resolve`` does the
network part).
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass, field

from ..errors import InvalidInput
from ..profiles import validate_profile
from ..validation import is_commit, validate_repo_id, validate_revision
from ._checks import check_cron, parse_env, parse_node_selector, parse_toleration
from .names import check_label, check_name, check_subdomain, label_value, slug
from .sizing import GIB

__all__ = ["ACCESS_MODES", "ISOLATIONS", "RenderOptions", "Target", "parse_duration"]

ACCESS_MODES = ("ReadWriteMany", "ReadWriteOnce")
ISOLATIONS = ("pvc", "subpath")
_DURATION = re.compile(r"^([0-9]+)(s|m|h|d)?\Z")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*\Z")
_IMAGE = re.compile(r"^[a-z0-9][a-z0-9._/:@-]*[a-z0-9]\Z", re.IGNORECASE)
_URL = re.compile(r"^https?://[A-Za-z0-9.\-\[\]:]+(/[A-Za-z0-9_.\-/]*)?\Z")
_QTY = re.compile(r"^[0-9]+(\.[0-9]+)?(m|Ki|Mi|Gi|Ti|k|M|G|T)?\Z")


def parse_duration(text: str | int, flag: str) -> int:
    """``3600``, ``90m``, ``6h``, ``1d`` → seconds (at least 1)."""
    match = _DURATION.match(str(text).strip())
    if not match or int(match.group(1)) < 1:
        raise InvalidInput(f"invalid {flag} {text!r}", "give seconds or a duration such as 90m, 6h, 1d")
    return int(match.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}[match.group(2)]


def _abs_path(path: str, flag: str) -> str:
    if (not path.startswith("/") or path != posixpath.normpath(path) or path == "/"
            or any(c.isspace() or ord(c) < 32 for c in path) or ":" in path):
        raise InvalidInput(f"invalid {flag} {path!r}", f"{flag}: give an absolute path such as /model-store")
    return path


@dataclass(frozen=True)
class Target:
    """Where one tenant's cache lives (or the only cache, when there are no tenants)."""

    tenant: str | None
    claim: str
    """The PVC the cache is on."""
    sub_path: str | None
    """The folder inside the PVC (``--isolation subpath``), else None."""
    base: str
    """Name stem for objects shared by every model in this cache (serve, GC): ``pvc[-tenant]``."""
    stem: str
    """Name stem for this model's objects (Job, engine template): ``name[-tenant]``."""


@dataclass(frozen=True)
class RenderOptions:
    """Everything the manifests are made from. Build it with keywords; it validates itself."""

    repo_id: str
    """The model, ``org/name``."""
    commit: str
    """The 40-hex commit the Job downloads and engines check: a revision is always pinned."""
    size_bytes: int
    """Bytes the cache volume asks for (already with headroom, whole GiB)."""
    revision: str = ""
    """What the user asked for (``main``, a tag); recorded as an annotation. Defaults to the commit."""
    model_bytes: int | None = None
    """The model's size on the Hub, when it was looked up (an annotation)."""
    namespace: str = "default"
    name: str = ""
    """Stem of this model's object names; default: from the repo name (``qwen3-32b``)."""
    pvc: str = "model-cache"
    storage_class: str | None = None
    """None: the cluster's default StorageClass."""
    access_mode: str = "ReadWriteMany"
    secret: str = "hf-token-secret"
    secret_key: str = "HF_TOKEN"
    token: str | None = field(default=None, repr=False)
    """The Secret's value — only when the user filled it on purpose (``--token-file``/stdin)."""
    image: str = "modelcache:0.1.0"
    """Our image (``Dockerfile``), for the Job, the init containers, serve and GC."""
    engine_image: str = "vllm/vllm-openai:latest"
    """The engine container's image in the consumer template (a stand-in for yours)."""
    mount_path: str = "/model-store"
    """Where the cache volume is mounted; ``HF_HOME`` points here (the cache is ``$HF_HOME/hub``)."""
    profile: str = "full"
    job_endpoint: str | None = None
    """An HF-compatible mirror for the Job (``--endpoint``); None: huggingface.co."""
    run_as_user: int = 1000
    fs_group: int = 1000
    """Group of every file on the volume; engine pods join it to read the cache."""
    backoff_limit: int = 4
    deadline_seconds: int = 6 * 3600
    ttl_seconds: int = 7 * 86400
    cpu: str = "2"
    memory: str = "2Gi"
    check_wait_seconds: int = 3600
    """How long the engine's init container waits for the cache before the pod restarts it."""
    serve: bool | None = None
    """Render ``modelcache serve`` (Deployment + Service); None: yes for ReadWriteOnce."""
    serve_port: int = 8080
    gc_schedule: str | None = None
    """Cron schedule of the GC CronJob; None: no CronJob."""
    gc_args: tuple[str, ...] = ()
    compile_cache_size: int | None = None
    """Bytes for a separate engine compilation-cache volume; None: none."""
    compile_cache_pvc: str = "compilation-cache"
    compile_cache_path: str = "/compile-cache"
    compile_cache_env: str = "VLLM_CACHE_ROOT"
    tenants: tuple[str, ...] = ()
    isolation: str = "pvc"
    """``pvc``: one PVC per tenant; ``subpath``: one PVC, one folder (``subPath``) per tenant."""
    allow_insecure_token: bool = False
    """Let the Job send the token to a plain-HTTP ``job_endpoint`` (off: it is withheld there)."""
    ca_bundle: str | None = None
    """``configmap/NAME`` or ``secret/NAME`` holding a CA bundle (key ``ca_bundle_key``) for TLS to the Hub."""
    ca_bundle_key: str = "ca.crt"
    proxy: str | None = None
    """An HTTP(S) proxy for the pods that reach the Hub (``HTTPS_PROXY``/``HTTP_PROXY``)."""
    no_proxy: tuple[str, ...] = ()
    """Extra ``NO_PROXY`` entries (in-cluster names and loopback are always there)."""
    serve_auth_upstream: str | None = None
    """Where ``serve`` checks callers' tokens for gated repos; None: ``job_endpoint`` or huggingface.co."""
    serve_auth_tokens_secret: str | None = None
    """Air-gapped: a Secret whose key ``tokens`` lists the tokens ``serve`` accepts (``--auth-tokens``)
    instead of asking an upstream."""
    image_pull_secrets: tuple[str, ...] = ()
    node_selector: tuple[str, ...] = ()
    """``KEY=VALUE`` node labels for our pods (Job, serve, mirror, GC)."""
    tolerations: tuple[str, ...] = ()
    """``KEY[=VALUE][:EFFECT]`` for our pods."""
    env_vars: tuple[str, ...] = ()
    """``NAME=VALUE`` added to our containers (not the engine's)."""
    mirror: bool = False
    """Render an HA read-through mirror (``serve --upstream``): Deployment, Service, PodDisruptionBudget."""
    mirror_upstream: str = "https://huggingface.co"
    mirror_replicas: int = 2
    mirror_workers: int = 2

    def __post_init__(self) -> None:
        if any(ord(c) < 33 or ord(c) > 126 for c in self.repo_id + self.revision + self.commit):
            raise InvalidInput("invalid repo id or revision: spaces or control characters",
                               "a repo id looks like 'org/name'; a revision like 'main' or a commit id")
        validate_repo_id(self.repo_id)
        if not is_commit(self.commit):
            raise InvalidInput(f"invalid commit {self.commit!r}", "the Job pins a 40-character commit id")
        if self.revision:
            validate_revision(self.revision)
        else:
            object.__setattr__(self, "revision", self.commit)
        if not self.name:
            object.__setattr__(self, "name", slug(self.repo_id))
        check_label(self.name, "name", "--name", max_len=40, dns1035=True)
        check_label(self.namespace, "namespace", "--namespace")
        check_label(self.pvc, "PVC name", "--pvc", max_len=40, dns1035=True)
        check_subdomain(self.secret, "Secret name", "--secret")
        check_label(self.compile_cache_pvc, "compile-cache PVC name", "--compile-cache-pvc", max_len=40)
        if self.storage_class is not None:
            check_subdomain(self.storage_class, "StorageClass", "--storage-class")
        if self.access_mode not in ACCESS_MODES:
            raise InvalidInput(f"invalid access mode {self.access_mode!r}", f"use one of: {', '.join(ACCESS_MODES)}")
        if self.isolation not in ISOLATIONS:
            raise InvalidInput(f"invalid isolation {self.isolation!r}", f"use one of: {', '.join(ISOLATIONS)}")
        if not _ENV_NAME.match(self.secret_key) or not _ENV_NAME.match(self.compile_cache_env):
            raise InvalidInput("invalid environment variable name", "use letters, digits and '_'")
        for image, flag in ((self.image, "--image"), (self.engine_image, "--engine-image")):
            if not _IMAGE.match(image) or len(image) > 255:
                raise InvalidInput(f"invalid {flag} {image!r}", "give an image reference such as registry/name:tag")
        _abs_path(self.mount_path, "--mount-path")
        _abs_path(self.compile_cache_path, "--compile-cache-path")
        if self.compile_cache_path == self.mount_path:
            raise InvalidInput("the compile cache and the model cache share a path", "give another --compile-cache-path")
        validate_profile(self.profile)
        if self.job_endpoint is not None and not _URL.match(self.job_endpoint):
            raise InvalidInput(f"invalid --job-endpoint {self.job_endpoint!r}", "give a URL such as http://hf-mirror:8080")
        for value, flag, lo, hi in ((self.run_as_user, "--run-as-user", 1, 2**31 - 1),
                                    (self.fs_group, "--fs-group", 0, 2**31 - 1),
                                    (self.backoff_limit, "--backoff-limit", 0, 100),
                                    (self.serve_port, "--serve-port", 1, 65535),
                                    (self.deadline_seconds, "--deadline", 60, 30 * 86400),
                                    (self.ttl_seconds, "--ttl", 60, 365 * 86400),
                                    (self.check_wait_seconds, "--check-wait", 1, 30 * 86400)):
            if not isinstance(value, int) or not lo <= value <= hi:
                raise InvalidInput(f"invalid {flag} {value!r}", f"give a whole number from {lo} to {hi}")
        for value, flag in ((self.cpu, "--cpu"), (self.memory, "--memory")):
            if not _QTY.match(value):
                raise InvalidInput(f"invalid {flag} {value!r}", "give a Kubernetes quantity such as 2, 500m, 2Gi")
        for value, flag in ((self.size_bytes, "--size"), (self.compile_cache_size, "--compile-cache-size")):
            if value is not None and (not isinstance(value, int) or value < GIB):
                raise InvalidInput(f"invalid {flag} {value!r}", "give at least 1Gi")
        if self.gc_schedule is not None:
            check_cron(self.gc_schedule)
        self._check_network_and_scheduling()
        for arg in self.gc_args:
            if not arg or any(ord(c) < 32 for c in arg) or len(arg) > 200:
                raise InvalidInput(f"invalid --gc-arg {arg!r}", "give one command-line word per --gc-arg")
        if len(set(self.tenants)) != len(self.tenants):
            raise InvalidInput("a tenant is named twice", "give each --tenant once")
        for tenant in self.tenants:
            check_label(tenant, "tenant", "--tenant", max_len=20)
        if self.token is not None and (not self.token or any(ord(c) < 33 or ord(c) > 126 for c in self.token)):
            raise InvalidInput("the token to fill the Secret is empty or holds spaces or control characters",
                               "the file must hold the token alone (a trailing newline is fine)")
        for t in self.targets():
            check_name(f"{t.stem}-download", "Job", "--name or --tenant")
            check_name(f"{t.stem}-engine", "PodTemplate", "--name or --tenant")
            check_name(f"{t.base}-serve", "Service", "--pvc or --tenant")
            check_name(f"{t.base}-gc", "CronJob", "--pvc or --tenant", max_len=52)
            check_name(f"{t.base}-mirror", "Deployment", "--pvc")
            check_name(t.claim, "PVC", "--pvc or --tenant")

    def _check_network_and_scheduling(self) -> None:
        for url, flag in ((self.proxy, "--proxy"), (self.serve_auth_upstream, "--serve-auth-upstream"),
                          (self.mirror_upstream, "--mirror-upstream")):
            if url is not None and not _URL.match(url):
                raise InvalidInput(f"invalid {flag} {url!r}", "give a URL such as http://proxy.corp:3128")
        for host in self.no_proxy:
            if not host or not re.match(r"^[A-Za-z0-9.\-*/:\[\]]+\Z", host):
                raise InvalidInput(f"invalid --no-proxy {host!r}", "give a host, a .domain suffix or a CIDR")
        if self.serve_auth_tokens_secret is not None:
            check_subdomain(self.serve_auth_tokens_secret, "Secret name", "--serve-auth-tokens-secret")
            if self.serve_auth_upstream is not None:
                raise InvalidInput("--serve-auth-upstream and --serve-auth-tokens-secret exclude each other",
                                   "choose one way for serve to check tokens")
        if self.ca_bundle is not None:
            kind, _, ref = self.ca_bundle.partition("/")
            if kind not in ("configmap", "secret"):
                raise InvalidInput(f"invalid --ca-bundle {self.ca_bundle!r}", "give configmap/NAME or secret/NAME")
            check_subdomain(ref, "CA bundle name", "--ca-bundle")
        if not re.match(r"^[-._A-Za-z0-9]{1,253}\Z", self.ca_bundle_key):
            raise InvalidInput(f"invalid --ca-bundle-key {self.ca_bundle_key!r}", "give a key such as ca.crt")
        for name in self.image_pull_secrets:
            check_subdomain(name, "imagePullSecret", "--image-pull-secret")
        for parse, values in ((parse_node_selector, self.node_selector), (parse_toleration, self.tolerations),
                              (parse_env, self.env_vars)):
            for value in values:
                parse(value)  # type: ignore[operator]
        if self.mirror:
            if self.access_mode != "ReadWriteMany":
                raise InvalidInput("--mirror runs several replicas on one volume: it needs ReadWriteMany",
                                   "add --access-mode ReadWriteMany (a shared filesystem: NFS, CephFS, EFS, Filestore)")
            if self.tenants:
                raise InvalidInput("--mirror with --tenant is not supported", "render the mirror without tenants")
            for value, flag, lo in ((self.mirror_replicas, "--mirror-replicas", 2), (self.mirror_workers, "--mirror-workers", 1)):
                if not isinstance(value, int) or not lo <= value <= 64:
                    raise InvalidInput(f"invalid {flag} {value!r}", f"give a whole number from {lo} to 64")

    # -- derived ---------------------------------------------------------------------------
    @property
    def serves(self) -> bool:
        """True when a ``serve`` Deployment is rendered (``--serve``; by default with ReadWriteOnce only)."""
        return self.access_mode == "ReadWriteOnce" if self.serve is None else self.serve

    @property
    def shared_compile_cache(self) -> bool:
        """A compile cache on a ReadWriteMany volume is one PVC every replica shares (compiled once);
        with ReadWriteOnce each replica gets its own emptyDir (a RWO volume attaches to one node)."""
        return self.compile_cache_size is not None and self.access_mode == "ReadWriteMany"

    @property
    def auth_upstream(self) -> str:
        """Where ``serve`` checks a caller's token for a gated or private repo."""
        return self.serve_auth_upstream or self.job_endpoint or "https://huggingface.co"

    @property
    def filled(self) -> bool:
        """True when the token Secret carries a value (``--token-file``/stdin), not just a template."""
        return self.token is not None

    @property
    def model_label(self) -> str:
        """The repo id as a valid label value (the ``modelcache.io/model`` label)."""
        return label_value(self.repo_id)

    def targets(self) -> list[Target]:
        """Where caches live: one target without tenants, else one per tenant (by ``--isolation``)."""
        if not self.tenants:
            return [Target(None, self.pvc, None, self.pvc, self.name)]
        out = []
        for t in self.tenants:
            claim = f"{self.pvc}-{t}" if self.isolation == "pvc" else self.pvc
            sub = f"tenants/{t}" if self.isolation == "subpath" else None
            out.append(Target(t, claim, sub, f"{self.pvc}-{t}", f"{self.name}-{t}"))
        return out

    def claims(self) -> list[str]:
        """Distinct model-cache PVCs, in order."""
        return list(dict.fromkeys(t.claim for t in self.targets()))

    def compile_claim(self, target: Target) -> str:
        """The name of the compile-cache PVC of ``target`` (``<pvc>-<tenant>`` with a tenant)."""
        return f"{self.compile_cache_pvc}-{target.tenant}" if target.tenant else self.compile_cache_pvc
