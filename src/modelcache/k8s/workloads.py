"""The download Job, ``modelcache serve`` (Deployment + Service) and the GC CronJob. Pure."""

from __future__ import annotations

from ..errors import PERMANENT_EXIT_CODES
from ._pod import (
    auth_args,
    auth_mount,
    auth_volume,
    ca_mount,
    ca_volume,
    network_env,
    pod_extras,
    user_env,
    cache_mount,
    cache_volume,
    container_security,
    download_command,
    env,
    hf_home,
    labels,
    meta,
    pod_security,
    tmp_mount,
    tmp_volume,
    token_mount,
    token_volume,
)
from .options import RenderOptions, Target

__all__ = ["download_job", "gc_account", "gc_cronjob", "gc_rbac", "pod_failure_policy", "serve_command",
           "serve_deployment", "serve_selector", "serve_service", "serve_url"]


def pod_failure_policy(container: str) -> dict[str, object]:
    """Fail the Job at once on an exit code no retry can fix (``errors.EXIT_CODES``: bad input,
    not found, token/gated, cache unusable); a disruption (preemption, drain) does not count.
    ``status`` is spelt out: Kubernetes before 1.35 requires it."""
    return {"rules": [
        {"action": "FailJob", "onExitCodes": {"containerName": container, "operator": "In",
                                              "values": list(PERMANENT_EXIT_CODES)}},
        {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
    ]}


def serve_selector(target: Target) -> dict[str, str]:
    """The labels that select the ``serve`` pods of ``target``'s cache."""
    return {"app.kubernetes.io/name": "modelcache", "app.kubernetes.io/component": "serve",
            "modelcache.io/cache": target.base}


def serve_url(o: RenderOptions, target: Target) -> str:
    """The in-cluster URL of the ``serve`` Service (``http://<base>-serve.<ns>.svc:<port>``)."""
    return f"http://{target.base}-serve.{o.namespace}.svc:{o.serve_port}"


def _near_serve(target: Target) -> dict[str, object]:
    """ReadWriteOnce: run on the node where ``serve`` mounts the volume — required, not preferred:
    elsewhere the pod would hang in ContainerCreating on a Multi-Attach error. Until ``serve``
    is scheduled the pod is Pending (Unschedulable), which ``k8s apply``/``status`` report."""
    return {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [{
        "labelSelector": {"matchLabels": serve_selector(target)}, "topologyKey": "kubernetes.io/hostname"}]}}


def download_job(o: RenderOptions, target: Target) -> dict[str, object]:
    """``modelcache download`` pinned to the commit, into the cache on the PVC."""
    container = {
        "name": "download",
        "image": o.image,
        "imagePullPolicy": "IfNotPresent",
        "command": download_command(o, o.job_endpoint, insecure_token=o.allow_insecure_token),
        "env": env(HF_HOME=hf_home(o, target, False), PYTHONUNBUFFERED="1", **network_env(o), **user_env(o)),
        "resources": {"requests": {"cpu": o.cpu, "memory": o.memory}, "limits": {"memory": o.memory}},
        "securityContext": container_security(),
        "volumeMounts": [cache_mount(o, target, read_only=False), token_mount(), tmp_mount(), *ca_mount(o)],
    }
    pod: dict[str, object] = {
        "restartPolicy": "Never",
        **pod_extras(o),
        "securityContext": pod_security(o),
        "containers": [container],
        "volumes": [cache_volume(target, read_only=False), token_volume(o), tmp_volume(), *ca_volume(o)],
    }
    if o.serves and o.access_mode == "ReadWriteOnce":
        pod["affinity"] = _near_serve(target)
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": meta(o, f"{target.stem}-download", "download", target),
        "spec": {
            "backoffLimit": o.backoff_limit,
            "activeDeadlineSeconds": o.deadline_seconds,
            "ttlSecondsAfterFinished": o.ttl_seconds,
            "podFailurePolicy": pod_failure_policy("download"),
            "template": {"metadata": {"labels": labels(o, "download", target)}, "spec": pod},
        },
    }


def serve_command(o: RenderOptions, *extra: str) -> list[str]:
    """``modelcache serve`` with ``--auth-upstream`` (or ``--auth-tokens``): a gated or private
    repo's files go only to callers whose token the Hub (or the list) accepts for that repo."""
    return ["modelcache", "serve", "--host", "0.0.0.0", "--port", str(o.serve_port),
            *auth_args(o, o.auth_upstream), *extra]


def probes(path_ready: str = "/readyz") -> dict[str, object]:
    """Readiness on ``/readyz`` (the cache is there and readable), liveness on ``/healthz``."""
    return {"readinessProbe": {"httpGet": {"path": path_ready, "port": "http"}, "periodSeconds": 5},
            "livenessProbe": {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 10,
                              "failureThreshold": 6}}


def serve_deployment(o: RenderOptions, target: Target) -> dict[str, object]:
    """``modelcache serve`` on the cache volume: engines on other nodes fetch from it."""
    container = {
        "name": "serve",
        "image": o.image,
        "imagePullPolicy": "IfNotPresent",
        "command": serve_command(o),
        "env": env(HF_HOME=hf_home(o, target, False), HF_HUB_OFFLINE="1", **network_env(o), **user_env(o)),
        "ports": [{"name": "http", "containerPort": o.serve_port, "protocol": "TCP"}],
        **probes(),
        "resources": {"requests": {"cpu": "500m", "memory": "512Mi"}, "limits": {"memory": "1Gi"}},
        "securityContext": container_security(),
        "volumeMounts": [cache_mount(o, target, read_only=False), tmp_mount(), *ca_mount(o), *auth_mount(o)],
    }
    pod_labels = {**labels(o, "serve", target, model=False), **serve_selector(target)}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": meta(o, f"{target.base}-serve", "serve", target, model=False),
        "spec": {
            "replicas": 1,
            "strategy": {"type": "Recreate"},
            "selector": {"matchLabels": serve_selector(target)},
            "template": {"metadata": {"labels": pod_labels},
                         "spec": {**pod_extras(o), "securityContext": pod_security(o), "containers": [container],
                                  "volumes": [cache_volume(target, read_only=False), tmp_volume(), *ca_volume(o),
                                              *auth_volume(o)]}},
        },
    }


def serve_service(o: RenderOptions, target: Target) -> dict[str, object]:
    """The ClusterIP Service in front of ``serve``."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": meta(o, f"{target.base}-serve", "serve", target, model=False),
        "spec": {"type": "ClusterIP", "selector": serve_selector(target),
                 "ports": [{"name": "http", "port": o.serve_port, "targetPort": "http", "protocol": "TCP"}]},
    }


def gc_cronjob(o: RenderOptions, target: Target) -> dict[str, object]:
    """``modelcache gc`` on a schedule; one per cache (shared by every model on it)."""
    container = {
        "name": "gc",
        "image": o.image,
        "imagePullPolicy": "IfNotPresent",
        "command": ["modelcache", "gc", *o.gc_args, "--k8s-namespace", o.namespace],
        "env": env(HF_HOME=hf_home(o, target, False), HF_HUB_OFFLINE="1", **user_env(o)),
        "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"memory": "512Mi"}},
        "securityContext": container_security(),
        "volumeMounts": [cache_mount(o, target, read_only=False), tmp_mount()],
    }
    # GC keeps the service-account token: it lists pods to protect the revisions they use (#12)
    pod: dict[str, object] = {"restartPolicy": "Never", "serviceAccountName": gc_account(target),
                              **pod_extras(o, api_access=True),
                              "securityContext": pod_security(o), "containers": [container],
                              "volumes": [cache_volume(target, read_only=False), tmp_volume()]}
    if o.serves and o.access_mode == "ReadWriteOnce":
        pod["affinity"] = _near_serve(target)
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": meta(o, f"{target.base}-gc", "gc", target, model=False),
        "spec": {
            "schedule": o.gc_schedule,
            "concurrencyPolicy": "Forbid",
            "startingDeadlineSeconds": 3600,
            "successfulJobsHistoryLimit": 1,
            "failedJobsHistoryLimit": 3,
            "jobTemplate": {"spec": {
                "backoffLimit": 1,
                "activeDeadlineSeconds": 3600,
                "ttlSecondsAfterFinished": 86400,
                "template": {"metadata": {"labels": labels(o, "gc", target, model=False)}, "spec": pod},
            }},
        },
    }


def gc_account(target: Target) -> str:
    """The GC CronJob's ServiceAccount (and Role, RoleBinding) name."""
    return f"{target.base}-gc"


def gc_rbac(o: RenderOptions, target: Target) -> list[dict[str, object]]:
    """GC's ServiceAccount, allowed only to read pods in its namespace (to keep what they use)."""
    name = gc_account(target)
    md = meta(o, name, "gc", target, model=False)
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": md},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": md,
         "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": md,
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
         "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": o.namespace}]},
    ]
