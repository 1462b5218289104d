"""Pieces every pod we render shares: labels, security contexts, volumes, command lines. Pure."""

from __future__ import annotations

from ..validation import is_commit
from .options import RenderOptions, Target

__all__ = [
    "CACHE_VOLUME",
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


def labels(o: RenderOptions, component: str, target: Target | None = None, *, model: bool = True) -> dict[str, str]:
    out = {"app.kubernetes.io/name": "modelcache", "app.kubernetes.io/component": component,
           "app.kubernetes.io/managed-by": "modelcache"}
    if model:
        out[f"{DOMAIN}/model"] = o.model_label
    if target is not None and target.tenant:
        out[f"{DOMAIN}/tenant"] = target.tenant
    return out


def annotations(o: RenderOptions) -> dict[str, str]:
    return {f"{DOMAIN}/repo-id": o.repo_id, f"{DOMAIN}/revision": o.revision, f"{DOMAIN}/commit": o.commit}


def meta(o: RenderOptions, name: str, component: str, target: Target | None = None, *, model: bool = True,
         extra_annotations: dict[str, str] | None = None) -> dict[str, object]:
    out: dict[str, object] = {"name": name, "namespace": o.namespace,
                              "labels": labels(o, component, target, model=model)}
    notes = {**(annotations(o) if model else {}), **(extra_annotations or {})}
    if notes:
        out["annotations"] = notes
    return out


def pod_security(o: RenderOptions) -> dict[str, object]:
    """Non-root, and every file on the volume group-owned by ``fs_group`` (engines join it).

    ``OnRootMismatch``: the kubelet does not walk the cache's files on every mount. With
    ``subPath`` tenants, ``Always``: an engine pod started before the Job makes the kubelet
    create the tenant folder as root, and only a full walk hands it back to ``fs_group``.
    """
    policy = "Always" if o.tenants and o.isolation == "subpath" else "OnRootMismatch"
    return {"runAsNonRoot": True, "runAsUser": o.run_as_user, "runAsGroup": o.fs_group, "fsGroup": o.fs_group,
            "fsGroupChangePolicy": policy, "seccompProfile": {"type": "RuntimeDefault"}}


def container_security() -> dict[str, object]:
    return {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]}}


def cache_volume(target: Target, read_only: bool) -> dict[str, object]:
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
    return f"{o.mount_path}/{target.sub_path}" if target.sub_path and not read_only else o.mount_path


def token_volume(o: RenderOptions) -> dict[str, object]:
    """The token as a file (re-read per download, so a rotated Secret needs no restart).

    ``optional``: public models download without a Secret.
    """
    return {"name": TOKEN_VOLUME, "secret": {"secretName": o.secret, "optional": True, "defaultMode": 0o440,
                                             "items": [{"key": o.secret_key, "path": "token"}]}}


def token_mount() -> dict[str, object]:
    return {"name": TOKEN_VOLUME, "mountPath": TOKEN_DIR, "readOnly": True}


def tmp_volume() -> dict[str, object]:
    return {"name": "tmp", "emptyDir": {"sizeLimit": "1Gi"}}


def tmp_mount() -> dict[str, object]:
    return {"name": "tmp", "mountPath": "/tmp"}


def download_command(o: RenderOptions, endpoint: str | None, token: bool = True) -> list[str]:
    """``modelcache [--token-file …] [--endpoint …] download REPO --revision COMMIT --profile P``."""
    cmd = ["modelcache"]
    if token:
        cmd += ["--token-file", TOKEN_PATH]
    if endpoint:
        cmd += ["--endpoint", endpoint]
    cmd += ["download", o.repo_id, "--revision", o.commit, "--profile", o.profile]
    if o.revision != o.commit and not is_commit(o.revision):
        cmd += ["--ref", o.revision]  # engines asking for `main` offline find the pinned commit
    return cmd


def check_command(o: RenderOptions) -> list[str]:
    return ["modelcache", "check", o.repo_id, "--revision", o.commit, "--profile", o.profile,
            "--wait", str(o.check_wait_seconds), "--interval", "5"]


def env(**values: str) -> list[dict[str, str]]:
    return [{"name": k, "value": v} for k, v in values.items()]
