"""``k8s render -f modelcache.yaml``: everything for a declared set of models. Pure (but ``resolve_set``).

On a shared volume: one PVC sized for every declared model, the file in a ConfigMap, one sync
Job (or a CronJob with ``--schedule``) running ``modelcache sync -f``, and an engine template
per served model (``name:``). With ``--node-local PATH`` (``nodelocal.py``): a DaemonSet that
syncs each selected node's disk and labels the node, its RBAC, and engine templates that
require that label.

The CLI parses the file (``sync.spec``) and hands this module plain ``SetModel`` rows: the
layers keep ``k8s`` and ``sync`` apart.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from .._format import human_size
from ..errors import InvalidInput
from ..profiles import select
from ..protocol import FileEntry
from ..validation import is_commit
from ._pod import (
    ca_mount,
    ca_volume,
    container_security,
    env,
    hf_home,
    labels,
    meta,
    network_env,
    pod_extras,
    pod_security,
    tmp_mount,
    tmp_volume,
    token_mount,
    token_volume,
    user_env,
    TOKEN_PATH,
    cache_mount,
    cache_volume,
)
from .consumer import engine_template
from ._checks import check_cron
from .names import check_label, check_name, slug
from .options import _URL, RenderOptions, _abs_path, parse_duration
from .render import Manifest, spec_hash
from .sizing import GIB, HEADROOM_FRACTION, HEADROOM_MIN, parse_quantity, volume_size_for
from .storage import model_cache_pvcs, secret
from .workloads import pod_failure_policy

__all__ = ["SPEC_DIR", "SPEC_PATH", "SetModel", "SetOptions", "pods_reader", "render_set", "set_engine_template", "resolve_set", "sync_command",
           "sync_rbac"]

SPEC_DIR = "/etc/modelcache"
SPEC_PATH = f"{SPEC_DIR}/modelcache.yaml"
SPEC_VOLUME = "sync-spec"


class _Hub(Protocol):
    def revision_info(self, repo_type: str, repo_id: str, revision: str): ...  # type: ignore[no-untyped-def]

    def list_files(self, repo_type: str, repo_id: str, commit: str) -> list[FileEntry]: ...


@dataclass(frozen=True)
class SetModel:
    """One declared model, as the manifests need it."""

    repo: str
    revision: str = "main"
    commit: str | None = None
    """Declared, or resolved upstream; required for a served model (its engine pins it)."""
    profile: str = "full"
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    served: str | None = None
    """The served name (``name:``): an engine template is rendered for it."""
    repo_type: str = "model"
    label_key: str = ""
    """``modelcache.io/<model-key>`` (node-local): the node label engines require."""
    size: int | None = None
    """Bytes of the files it needs, when looked up."""


@dataclass(frozen=True)
class SetOptions:
    """A declared set and how to render it. ``base`` carries every shared flag (its repo/commit are unused)."""

    base: RenderOptions
    models: tuple[SetModel, ...]
    spec_text: str
    set_name: str = "models"
    schedule: str | None = None
    """Cron schedule: a CronJob instead of a one-off Job."""
    node_local: str | None = None
    """A host path: render the node-local tier (DaemonSet) instead of a shared volume."""
    mirror_url: str | None = None
    interval: str = "10m"
    model_bytes: int | None = None

    def __post_init__(self) -> None:
        check_label(self.set_name, "name", "--name", max_len=40, dns1035=True)
        if self.schedule is not None:
            check_cron(self.schedule, "--schedule")
        if self.node_local is not None:
            _abs_path(self.node_local, "--node-local")
            _check_host_path(self.node_local)
            if self.mirror_url is None:
                raise InvalidInput("--node-local needs --mirror-url: every node pulls the set from it",
                                   "render a mirror (k8s render … --mirror) and give its URL, e.g. "
                                   "http://mirror-cache-mirror.default.svc:8080 (or the Hub's URL, on purpose)")
            if any(e.partition("=")[0] == "NODE_NAME" for e in self.base.env_vars):
                raise InvalidInput("--env NODE_NAME is set by render itself (the pod's own node, spec.nodeName)",
                                   "drop it: a node-local pod labels only its own node")
            if self.schedule is not None:
                raise InvalidInput("--schedule is for the sync Job; the node-local DaemonSet loops on --interval",
                                   "drop --schedule, or give --interval")
        if self.mirror_url is not None and not _URL.match(self.mirror_url):
            raise InvalidInput(f"invalid --mirror-url {self.mirror_url!r}", "give a URL such as http://hf-mirror:8080")
        if not re.match(r"^[0-9]+(s|m|h|d)?\Z", self.interval) or parse_duration(self.interval, "--interval") < 10:
            raise InvalidInput(f"invalid --interval {self.interval!r}", "give at least 10s, e.g. 10m")
        check_name(f"{self.set_name}-node-sync", "DaemonSet", "--name")
        check_name(f"{self.set_name}-sync", "CronJob", "--name", max_len=52)
        if not self.models:
            raise InvalidInput("the file declares no models", "declare at least one under `models:`")
        stems: dict[str, str] = {}
        for m in self.models:
            if m.served is None:
                continue
            if m.commit is None or not is_commit(m.commit):
                raise InvalidInput(f"no commit for the served model {m.served} ({m.repo}@{m.revision})",
                                   "declare `commit:`, or render where the endpoint is reachable")
            stem = slug(m.served)
            if stem in stems:
                raise InvalidInput(f"the served names {stems[stem]!r} and {m.served!r} give the same object name {stem!r}",
                                   "rename one of them")
            stems[stem] = m.served
            check_name(f"{stem}-engine", "PodTemplate", "the model's name:")

    @property
    def spec_hash(self) -> str:
        """16 hex of the sha256 of the spec file's text (a pod annotation: a changed spec rolls the pods)."""
        return hashlib.sha256(self.spec_text.encode()).hexdigest()[:16]

    def model_options(self, m: SetModel) -> RenderOptions:
        """``base`` for one served model: its repo, commit, profile and object names."""
        assert m.commit is not None and m.served is not None
        return dataclasses.replace(self.base, repo_id=m.repo, commit=m.commit, revision=m.revision,
                                   profile=m.profile, name=slug(m.served), serve=False, tenants=())


_SYSTEM_TREES = ("/bin", "/boot", "/dev", "/etc", "/lib", "/lib32", "/lib64", "/libx32", "/proc", "/root", "/run",
                 "/sbin", "/sys", "/usr", "/var/run", "/var/lib/kubelet", "/var/lib/containerd", "/var/lib/docker",
                 "/var/log")
_SYSTEM_DIRS = ("/home", "/mnt", "/media", "/opt", "/srv", "/tmp", "/var", "/var/lib", "/var/cache", "/data")


def _check_host_path(path: str) -> str:
    """A folder of its own: the DaemonSet hands it to our user (chown), so never a system folder."""
    if path in _SYSTEM_DIRS or any(path == t or path.startswith(t + "/") for t in _SYSTEM_TREES):
        raise InvalidInput(f"invalid --node-local {path!r}: a system folder (the DaemonSet takes ownership of it)",
                           "give a folder of its own on the node's local disk, e.g. /mnt/nvme/models")
    return path


def set_engine_template(so: SetOptions, m: SetModel) -> dict[str, object]:
    """The single-model engine template for a served model, its check judging by the model's
    declared include/exclude (as sync downloaded it)."""
    o = so.model_options(m)
    tpl = engine_template(o, o.targets()[0])
    ask = [a for p in m.include for a in ("--include", p)] + [a for p in m.exclude for a in ("--exclude", p)]
    for c in tpl["template"]["spec"]["initContainers"]:  # type: ignore[index]
        if c["name"] == "wait-for-model" and ask:
            c["command"] = [*c["command"], *ask]
    return tpl


def resolve_set(models: Sequence[SetModel], size: str, *, offline: bool, hub: _Hub | None,
                need_size: bool = True) -> tuple[list[SetModel], int, int | None]:
    """Commits for served models (and every model when sizing), sizes from the upstream (``--size auto``).

    Returns the models (commit and size filled in), the volume size to ask for, and the
    models' total bytes when looked up. The upstream is asked only when needed."""
    auto = size.strip().lower() == "auto"
    given = None if auto else parse_quantity(size)
    out: list[SetModel] = []
    total = 0
    for m in models:
        commit = m.commit or (m.revision if is_commit(m.revision) else None)
        wants_commit = m.served is not None or (auto and need_size)
        if commit is None and wants_commit:
            if offline or hub is None:
                raise InvalidInput(f"--offline cannot pin {m.repo}@{m.revision} to a commit",
                                   "declare `commit:` in the file (and give --size)")
            commit = hub.revision_info(m.repo_type, m.repo, m.revision).commit
        nbytes = None
        if auto and need_size:
            if offline or hub is None:
                raise InvalidInput("--size auto looks the models up upstream, and --offline forbids it",
                                   "give --size (e.g. --size 500Gi)")
            assert commit is not None
            files = {f.path: f for f in hub.list_files(m.repo_type, m.repo, commit)}
            nbytes = sum(files[p].size for p in select(files, m.profile, m.include, m.exclude))
            total += nbytes
        out.append(dataclasses.replace(m, commit=commit, size=nbytes))
    if given is not None:
        return out, given, None
    if not need_size:
        return out, volume_size_for(0), None
    return out, volume_size_for(total), total


def sync_command(so: SetOptions, endpoint: str | None, insecure_token: bool, *extra: str) -> list[str]:
    """``modelcache --token-file … [--endpoint …] sync -f /etc/modelcache/modelcache.yaml …``."""
    cmd = ["modelcache", "--token-file", TOKEN_PATH]
    if endpoint:
        cmd += ["--endpoint", endpoint]
    if insecure_token:
        cmd += ["--allow-insecure-token"]
    return [*cmd, "sync", "-f", SPEC_PATH, "--k8s-namespace", so.base.namespace, *extra]


def pods_reader(so: SetOptions, name: str, component: str) -> list[dict[str, object]]:
    """A Role that may read pods in the set's namespace, bound to ServiceAccount ``name``: sync's
    GC keeps every revision a live engine pod uses (``--k8s-namespace``)."""
    md = set_meta(so, name, component)
    return [
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": md,
         "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": md,
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
         "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": so.base.namespace}]},
    ]


def sync_rbac(so: SetOptions) -> list[dict[str, object]]:
    """The sync Job's ServiceAccount and its right to list pods (nothing else)."""
    name = f"{so.set_name}-sync"
    return [{"apiVersion": "v1", "kind": "ServiceAccount", "metadata": set_meta(so, name, "sync")},
            *pods_reader(so, name, "sync")]


def set_labels(so: SetOptions, component: str) -> dict[str, str]:
    return {**labels(so.base, component, model=False), "modelcache.io/set": so.set_name}


def set_meta(so: SetOptions, name: str, component: str) -> dict[str, object]:
    out = meta(so.base, name, component, model=False)
    out["labels"] = set_labels(so, component)
    return out


def spec_configmap(so: SetOptions) -> dict[str, object]:
    """The file, verbatim (comments kept): mounted at /etc/modelcache; sync re-reads it each run."""
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": set_meta(so, f"{so.set_name}-spec", "sync-spec"),
            "data": {"modelcache.yaml": so.spec_text}}


def spec_volume(so: SetOptions) -> dict[str, object]:
    return {"name": SPEC_VOLUME, "configMap": {"name": f"{so.set_name}-spec", "defaultMode": 0o444}}


def spec_mount() -> dict[str, object]:
    return {"name": SPEC_VOLUME, "mountPath": SPEC_DIR, "readOnly": True}


def _sync_pod(so: SetOptions) -> dict[str, object]:
    o = so.base
    target = o.targets()[0]
    container = {
        "name": "sync",
        "image": o.image,
        "imagePullPolicy": "IfNotPresent",
        "command": sync_command(so, o.job_endpoint, o.allow_insecure_token),
        "env": env(HF_HOME=hf_home(o, target, False), PYTHONUNBUFFERED="1", **network_env(o), **user_env(o)),
        "resources": {"requests": {"cpu": o.cpu, "memory": o.memory}, "limits": {"memory": o.memory}},
        "securityContext": container_security(),
        "volumeMounts": [cache_mount(o, target, read_only=False), spec_mount(), token_mount(), tmp_mount(), *ca_mount(o)],
    }
    return {"restartPolicy": "Never", **pod_extras(o, api_access=True), "serviceAccountName": f"{so.set_name}-sync",
            "securityContext": pod_security(o), "containers": [container],
            "volumes": [cache_volume(target, read_only=False), spec_volume(so), token_volume(o), tmp_volume(),
                        *ca_volume(o)]}


def sync_job(so: SetOptions) -> dict[str, object]:
    """``modelcache sync -f`` once (a Job) or on ``--schedule`` (a CronJob); the pod template carries
    the file's hash, so ``k8s apply`` recreates the Job when the set changed."""
    o = so.base
    job_spec: dict[str, object] = {
        "backoffLimit": o.backoff_limit,
        "activeDeadlineSeconds": o.deadline_seconds,
        "ttlSecondsAfterFinished": o.ttl_seconds,
        "podFailurePolicy": pod_failure_policy("sync"),
        "template": {"metadata": {"labels": set_labels(so, "sync"), "annotations": {"modelcache.io/set-hash": so.spec_hash}},
                     "spec": _sync_pod(so)},
    }
    if so.schedule is None:
        job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": set_meta(so, f"{so.set_name}-sync", "sync"),
               "spec": job_spec}
        job["metadata"]["annotations"] = {"modelcache.io/spec-hash": spec_hash(job)}  # type: ignore[index]
        return job
    return {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": set_meta(so, f"{so.set_name}-sync", "sync"),
            "spec": {"schedule": so.schedule, "concurrencyPolicy": "Forbid", "startingDeadlineSeconds": 3600,
                     "successfulJobsHistoryLimit": 1, "failedJobsHistoryLimit": 3,
                     "jobTemplate": {"spec": job_spec}}}


def _listing(so: SetOptions) -> list[str]:
    lines = []
    for m in so.models:
        what = f"{m.repo}@{m.revision}" + (f" → {m.commit[:12]}" if m.commit else "")
        lines.append(f"  {what} ({m.profile}" + (f", {human_size(m.size)}" if m.size is not None else "")
                     + (f", served as {m.served})" if m.served else ")"))
    return lines


def render_set(so: SetOptions) -> list[Manifest]:
    """Every file for the set, in apply order."""
    if so.node_local is not None:
        raise InvalidInput("render_set renders a shared volume", "use nodelocal.render_node_local for --node-local")
    o = so.base
    sized = (f"The {len(so.models)} models are {human_size(so.model_bytes)} upstream; asked {o.size_bytes // GIB}Gi = "
             f"size + max({int(HEADROOM_FRACTION * 100)}%, {HEADROOM_MIN // GIB}Gi), rounded up to a whole Gi."
             if so.model_bytes is not None else f"{o.size_bytes // GIB}Gi as given (--size).")
    out = [Manifest("secret.yaml", (f"Secret {o.secret}: FILLED with a token (--token-file). Do not commit this file.",),
                    (secret(o),), sensitive=True)] if o.filled else []
    out.append(Manifest("pvc.yaml", (f"One {o.access_mode} volume for the set; HF_HOME={o.mount_path}.", sized),
                        tuple(model_cache_pvcs(o))))
    out.append(Manifest("sync-spec.yaml", ("The declared set (modelcache.yaml), as given:", *_listing(so)),
                        (spec_configmap(so),)))
    out.append(Manifest("sync-rbac.yaml", (
        f"The sync Job's ServiceAccount: it may list pods in {o.namespace}, so that GC keeps what live engines use.",
    ), tuple(sync_rbac(so))))
    when = f"on {so.schedule!r} (a CronJob)" if so.schedule else "once (a Job; apply again after changing the file)"
    out.append(Manifest("sync-job.yaml", (
        f"modelcache sync -f {SPEC_PATH} {when}: downloads what is missing, pins and registers what is",
        "declared, unpins what no longer is, applies the file's GC policy. Exit codes {2,3,4,7} fail it at once.",
    ), (sync_job(so),)))
    served = [m for m in so.models if m.served]
    if served:
        out.append(Manifest("engine-template.yaml", (
            "One engine template per served model: each waits for its model (pinned commit) and reads it offline.",
            "Copy initContainers, volumes, imagePullSecrets and the engine container's env/volumeMounts/resources "
            "into your engine pod spec.",
        ), tuple(set_engine_template(so, m) for m in served)))
    return out
