"""Pieces every pod we render shares: labels, security contexts, volumes, command lines. Pure."""

from __future__ import annotations

from ..validation import is_commit
from ._checks import parse_env, parse_node_selector, parse_toleration
from .options import RenderOptions, Target

__all__ = [
    "CACHE_VOLUME",
    "AUTH_TOKENS",
    "CA_PATH",
    "auth_args",
    "auth_mount",
    "auth_volume",
    "NO_PROXY",
    "ca_mount",
    "ca_volume",
    "network_env",
    "pod_extras",
    "user_env",
    "TOKEN_DIR",
    "TOKEN_PATH",
    "annotations",
    "cache_mount",
    "cache_volume",
    "check_command",
    "container_security",
    "download_command",
    "hf_home",
    "labels",
    "meta",
    "pod_security",
    "tmp_mount",
    "tmp_volume",
    "token_mount",
    "token_volume",
]

CACHE_VOLUME = "model-cache"
TOKEN_VOLUME = "hf-token"
TOKEN_DIR = "/var/run/secrets/huggingface"
TOKEN_PATH = f"{TOKEN_DIR}/token"
DOMAIN = "modelcache.io"
AUTH_VOLUME = "serve-auth-tokens"
AUTH_DIR = "/var/run/secrets/modelcache-auth"
AUTH_TOKENS = f"{AUTH_DIR}/tokens"
CA_VOLUME = "ca-bundle"
CA_DIR = "/etc/modelcache/ca"
CA_PATH = f"{CA_DIR}/ca.crt"
NO_PROXY = ("localhost", "127.0.0.1", "::1", ".svc", ".cluster.local")
"""Never proxied: loopback and in-cluster Service names (``serve``, the mirror)."""


def labels(o: RenderOptions, component: str, target: Target | None = None, *, model: bool = True) -> dict[str, str]:
    """The pod labels: name, component, managed-by, plus the model label and the target's tenant when set."""
    out = {"app.kubernetes.io/name": "modelcache", "app.kubernetes.io/component": component,
           "app.kubernetes.io/managed-by": "modelcache"}
    if model:
        out[f"{DOMAIN}/model"] = o.model_label
    if target is not None and target.tenant:
        out[f"{DOMAIN}/tenant"] = target.tenant
    return out


def annotations(o: RenderOptions) -> dict[str, str]:
    """The repo id, revision and commit annotations."""
    return {f"{DOMAIN}/repo-id": o.repo_id, f"{DOMAIN}/revision": o.revision, f"{DOMAIN}/commit": o.commit}


def meta(o: RenderOptions, name: str, component: str, target: Target | None = None, *, model: bool = True,
         extra_annotations: dict[str, str] | None = None) -> dict[str, object]:
    """A ``metadata`` block: name, namespace, labels and (model and extra) annotations."""
    out: dict[str, object] = {"name": name, "namespace": o.namespace,
                              "labels": labels(o, component, target, model=model)}
    notes = {**(annotations(o) if model else {}), **(extra_annotations or {})}
    if notes:
        out["annotations"] = notes
    return out


def pod_security(o: RenderOptions) -> dict[str, object]:
    """Non-root, and every file on the volume group-owned by ``fs_group`` (engines join it).

    ``fsGroupChangePolicy: OnRootMismatch``, always: every file on the volume is written by our
    pods, as ``run_as_user`` with group ``fs_group`` and group-readable modes, so once the
    volume's root is right the rest is too, and the kubelet need not walk (and re-chown) every
    tenant's files at each start, which ``Always`` does. It stays safe with ``subPath`` tenants
    because no pod of ours lets the kubelet create a tenant folder as root: our own pods mount
    the whole volume and create the folder themselves, and an engine's ``subPath`` mount is
    made only after its init container (on the whole volume) found the model there.
    """
    return {"runAsNonRoot": True, "runAsUser": o.run_as_user, "runAsGroup": o.fs_group, "fsGroup": o.fs_group,
            "fsGroupChangePolicy": "OnRootMismatch", "seccompProfile": {"type": "RuntimeDefault"}}


def pod_extras(o: RenderOptions, *, api_access: bool = False, scheduling: bool = True) -> dict[str, object]:
    """Pod-spec fields from the flags: no service-account token unless the pod talks to the API,
    imagePullSecrets, and (for our own pods) nodeSelector and tolerations."""
    out: dict[str, object] = {}
    if not api_access:
        out["automountServiceAccountToken"] = False
    if o.image_pull_secrets:
        out["imagePullSecrets"] = [{"name": n} for n in o.image_pull_secrets]
    if scheduling and o.node_selector:
        out["nodeSelector"] = dict(parse_node_selector(s) for s in o.node_selector)
    if scheduling and o.tolerations:
        out["tolerations"] = [parse_toleration(t) for t in o.tolerations]
    return out


def network_env(o: RenderOptions) -> dict[str, str]:
    """For pods that reach the Hub: the proxy (with in-cluster names bypassing it) and the CA bundle."""
    out: dict[str, str] = {}
    if o.proxy:
        out.update(HTTPS_PROXY=o.proxy, HTTP_PROXY=o.proxy, NO_PROXY=",".join(dict.fromkeys((*NO_PROXY, *o.no_proxy))))
    if o.ca_bundle:
        out.update(SSL_CERT_FILE=CA_PATH, REQUESTS_CA_BUNDLE=CA_PATH)
    return out


def user_env(o: RenderOptions) -> dict[str, str]:
    """``--env NAME=VALUE`` pairs, in order."""
    return dict(parse_env(e) for e in o.env_vars)


def ca_volume(o: RenderOptions) -> list[dict[str, object]]:
    """The ``--ca-bundle`` volume (a Secret or ConfigMap, key mounted as ``ca.crt``); empty without one."""
    if not o.ca_bundle:
        return []
    kind, _, name = o.ca_bundle.partition("/")
    items = [{"key": o.ca_bundle_key, "path": "ca.crt"}]
    if kind == "secret":
        return [{"name": CA_VOLUME, "secret": {"secretName": name, "items": items, "defaultMode": 0o444}}]
    return [{"name": CA_VOLUME, "configMap": {"name": name, "items": items, "defaultMode": 0o444}}]


def auth_volume(o: RenderOptions) -> list[dict[str, object]]:
    """``--serve-auth-tokens-secret``: the allowed-token list for ``serve --auth-tokens``."""
    if not o.serve_auth_tokens_secret:
        return []
    return [{"name": AUTH_VOLUME, "secret": {"secretName": o.serve_auth_tokens_secret, "defaultMode": 0o440,
                                             "items": [{"key": "tokens", "path": "tokens"}]}}]


def auth_mount(o: RenderOptions) -> list[dict[str, object]]:
    """The mount of the allowed-token list at ``AUTH_DIR``; empty without ``--serve-auth-tokens-secret``."""
    return [{"name": AUTH_VOLUME, "mountPath": AUTH_DIR, "readOnly": True}] if o.serve_auth_tokens_secret else []


def auth_args(o: RenderOptions, upstream: str) -> list[str]:
    """How ``serve`` checks a caller's token for a gated or private repo."""
    if o.serve_auth_tokens_secret:
        return ["--auth-tokens", AUTH_TOKENS]
    return ["--auth-upstream", o.serve_auth_upstream or upstream]


def ca_mount(o: RenderOptions) -> list[dict[str, object]]:
    """The read-only mount of the CA bundle at ``CA_DIR``; empty without ``--ca-bundle``."""
    return [{"name": CA_VOLUME, "mountPath": CA_DIR, "readOnly": True}] if o.ca_bundle else []


def container_security() -> dict[str, object]:
    """The container ``securityContext``: no privilege escalation, read-only root, all capabilities dropped."""
    return {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]}}


def cache_volume(target: Target, read_only: bool) -> dict[str, object]:
    """The cache volume: the target's PVC (``readOnly`` when ``read_only``)."""
    source: dict[str, object] = {"claimName": target.claim}
    if read_only:
        source["readOnly"] = True
    return {"name": CACHE_VOLUME, "persistentVolumeClaim": source}


def cache_mount(o: RenderOptions, target: Target, read_only: bool) -> dict[str, object]:
    """Engines (read-only) see only their tenant's folder (``subPath``); our own pods (the Job,
    serve, GC) mount the whole volume and point ``HF_HOME`` into the folder (``hf_home``), so
    the folder is created by our non-root user, never by the kubelet as root."""
    mount: dict[str, object] = {"name": CACHE_VOLUME, "mountPath": o.mount_path}
    if target.sub_path and read_only:
        mount["subPath"] = target.sub_path
    if read_only:
        mount["readOnly"] = True
    return mount


def hf_home(o: RenderOptions, target: Target, read_only: bool) -> str:
    """The ``HF_HOME`` a pod uses: the tenant folder for our own (writing) pods, else the mount path."""
    return f"{o.mount_path}/{target.sub_path}" if target.sub_path and not read_only else o.mount_path


def token_volume(o: RenderOptions) -> dict[str, object]:
    """The token as a file (re-read per download, so a rotated Secret needs no restart).

    ``optional``: public models download without a Secret.
    """
    return {"name": TOKEN_VOLUME, "secret": {"secretName": o.secret, "optional": True, "defaultMode": 0o440,
                                             "items": [{"key": o.secret_key, "path": "token"}]}}


def token_mount() -> dict[str, object]:
    """The read-only mount of the token Secret at ``TOKEN_DIR``."""
    return {"name": TOKEN_VOLUME, "mountPath": TOKEN_DIR, "readOnly": True}


def tmp_volume() -> dict[str, object]:
    """A 1 GiB ``emptyDir`` for ``/tmp`` (the root filesystem is read-only)."""
    return {"name": "tmp", "emptyDir": {"sizeLimit": "1Gi"}}


def tmp_mount() -> dict[str, object]:
    """The mount of the ``tmp`` volume at ``/tmp``."""
    return {"name": "tmp", "mountPath": "/tmp"}


def download_command(o: RenderOptions, endpoint: str | None, token: bool = True,
                     insecure_token: bool = False) -> list[str]:
    """``modelcache [--token-file …] [--endpoint …] [--allow-insecure-token] download REPO
    --revision COMMIT --profile P --json`` (``--json``: progress and errors as JSON lines, which
    ``k8s apply``/``status`` parse)."""
    cmd = ["modelcache"]
    if token:
        cmd += ["--token-file", TOKEN_PATH]
    if endpoint:
        cmd += ["--endpoint", endpoint]
    if token and insecure_token:
        cmd += ["--allow-insecure-token"]
    cmd += ["download", o.repo_id, "--revision", o.commit, "--profile", o.profile, "--json"]
    if o.revision != o.commit and not is_commit(o.revision):
        cmd += ["--ref", o.revision]  # engines asking for `main` offline find the pinned commit
    return cmd


def check_command(o: RenderOptions) -> list[str]:
    """``modelcache check REPO --revision COMMIT --profile P --wait S --interval 5`` (waits until ready)."""
    return ["modelcache", "check", o.repo_id, "--revision", o.commit, "--profile", o.profile,
            "--wait", str(o.check_wait_seconds), "--interval", "5"]


def env(**values: str) -> list[dict[str, str]]:
    return [{"name": k, "value": v} for k, v in values.items()]
