"""The download Job, ``modelcache serve`` (Deployment + Service) and the GC CronJob. Pure."""

from __future__ import annotations

from ._pod import (
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

__all__ = ["PERMANENT_EXIT_CODES", "download_job", "gc_account", "gc_cronjob", "gc_rbac", "serve_deployment", "serve_selector",
           "serve_service", "serve_url"]

PERMANENT_EXIT_CODES = [2, 3, 4, 7]
"""``download`` exit codes no retry can fix: bad input, not found, token/gated, cache unusable."""


def serve_selector(target: Target) -> dict[str, str]:
    return {"app.kubernetes.io/name": "modelcache", "app.kubernetes.io/component": "serve",
            "modelcache.io/cache": target.base}


def serve_url(o: RenderOptions, target: Target) -> str:
    return f"http://{target.base}-serve.{o.namespace}.svc:{o.serve_port}"


def _near_serve(target: Target) -> dict[str, object]:
    """ReadWriteOnce: prefer the node where ``serve`` already mounts the volume."""
    return {"podAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{
        "weight": 100,
        "podAffinityTerm": {"labelSelector": {"matchLabels": serve_selector(target)},
                            "topologyKey": "kubernetes.io/hostname"}}]}}


def download_job(o: RenderOptions, target: Target) -> dict[str, object]:
    """``modelcache download`` pinned to the commit, into the cache on the PVC."""
    container = {
        "name": "download",
        "image": o.image,
        "imagePullPolicy": "IfNotPresent",
        "command": download_command(o, o.job_endpoint),
        "env": env(HF_HOME=hf_home(o, target, False), PYTHONUNBUFFERED="1"),
        "resources": {"requests": {"cpu": o.cpu, "memory": o.memory}, "limits": {"memory": o.memory}},
        "securityContext": container_security(),
        "volumeMounts": [cache_mount(o, target, read_only=False), token_mount(), tmp_mount()],
    }
    pod: dict[str, object] = {
        "restartPolicy": "Never",
        "securityContext": pod_security(o),
        "containers": [container],
        "volumes": [cache_volume(target, read_only=False), token_volume(o), tmp_volume()],
    }
    if o.serves:
        pod["affinity"] = _near_serve(target)
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": meta(o, f"{target.stem}-download", "download", target),
        "spec": {
            "backoffLimit": o.backoff_limit,
            "activeDeadlineSeconds": o.deadline_seconds,
            "ttlSecondsAfterFinished": o.ttl_seconds,
            "podFailurePolicy": {"rules": [
                {"action": "FailJob", "onExitCodes": {"containerName": "download", "operator": "In",
                                                      "values": PERMANENT_EXIT_CODES}},
                {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]},
            ]},
            "template": {"metadata": {"labels": labels(o, "download", target)}, "spec": pod},
        },
    }


def serve_deployment(o: RenderOptions, target: Target) -> dict[str, object]:
    """``modelcache serve`` on the cache volume: engines on other nodes fetch from it."""
    probe = {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 10}
    container = {
        "name": "serve",
        "image": o.image,
        "imagePullPolicy": "IfNotPresent",
        "command": ["modelcache", "serve", "--host", "0.0.0.0", "--port", str(o.serve_port)],
        "env": env(HF_HOME=hf_home(o, target, False), HF_HUB_OFFLINE="1"),
        "ports": [{"name": "http", "containerPort": o.serve_port, "protocol": "TCP"}],
        "readinessProbe": probe,
        "livenessProbe": {**probe, "failureThreshold": 6},
        "resources": {"requests": {"cpu": "500m", "memory": "512Mi"}, "limits": {"memory": "1Gi"}},
        "securityContext": container_security(),
        "volumeMounts": [cache_mount(o, target, read_only=False), tmp_mount()],
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
                         "spec": {"securityContext": pod_security(o), "containers": [container],
                                  "volumes": [cache_volume(target, read_only=False), tmp_volume()]}},
        },
    }


def serve_service(o: RenderOptions, target: Target) -> dict[str, object]:
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
        "env": env(HF_HOME=hf_home(o, target, False), HF_HUB_OFFLINE="1"),
        "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"memory": "512Mi"}},
        "securityContext": container_security(),
        "volumeMounts": [cache_mount(o, target, read_only=False), tmp_mount()],
    }
    pod: dict[str, object] = {"restartPolicy": "Never", "serviceAccountName": gc_account(target),
                              "securityContext": pod_security(o), "containers": [container],
                              "volumes": [cache_volume(target, read_only=False), tmp_volume()]}
    if o.serves:
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
