"""An HA read-through mirror: ``modelcache serve --upstream`` as a Deployment of ≥ 2 replicas
on the shared ReadWriteMany cache volume, a Service, a PodDisruptionBudget. Pure.

Replicas fill the cache through its own lock files, so a file is fetched once across
replicas; any replica serves what any other filled. Pods spread over nodes (preferred
anti-affinity: a one-node cluster still runs them) and zones (``ScheduleAnyway``), and a
PodDisruptionBudget keeps one up through a drain. Prometheus finds ``/metrics`` on the ``http`` port through the usual
``prometheus.io/*`` annotations, and a ServiceMonitor can select the Service by its labels
and scrape the port named ``http``.
"""

from __future__ import annotations

from ._pod import (
    TOKEN_PATH,
    auth_args,
    auth_mount,
    auth_volume,
    ca_mount,
    ca_volume,
    cache_mount,
    cache_volume,
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
)
from .options import RenderOptions, Target
from .workloads import probes

__all__ = ["mirror_deployment", "mirror_objects", "mirror_pdb", "mirror_selector", "mirror_service", "mirror_url"]


def mirror_selector(target: Target) -> dict[str, str]:
    """The labels that select the mirror's pods of ``target``'s cache."""
    return {"app.kubernetes.io/name": "modelcache", "app.kubernetes.io/component": "mirror",
            "modelcache.io/cache": target.base}


def _scrape(o: RenderOptions) -> dict[str, str]:
    return {"prometheus.io/scrape": "true", "prometheus.io/port": str(o.serve_port), "prometheus.io/path": "/metrics"}


def mirror_deployment(o: RenderOptions, target: Target) -> dict[str, object]:
    """``serve --upstream`` with the token Secret for fills and ``--auth-upstream`` for callers."""
    command = ["modelcache", "--token-file", TOKEN_PATH, "serve", "--host", "0.0.0.0", "--port", str(o.serve_port),
               "--upstream", o.mirror_upstream, *auth_args(o, o.mirror_upstream), "--workers", str(o.mirror_workers)]
    container = {
        "name": "mirror",
        "image": o.image,
        "imagePullPolicy": "IfNotPresent",
        "command": command,
        "env": env(HF_HOME=hf_home(o, target, False), **network_env(o), **user_env(o)),
        "ports": [{"name": "http", "containerPort": o.serve_port, "protocol": "TCP"}],
        **probes(),
        "resources": {"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"memory": "2Gi"}},
        "securityContext": container_security(),
        "volumeMounts": [cache_mount(o, target, read_only=False), token_mount(), tmp_mount(), *ca_mount(o),
                         *auth_mount(o)],
    }
    selector = mirror_selector(target)
    spread = {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{
        "weight": 100, "podAffinityTerm": {"labelSelector": {"matchLabels": selector},
                                           "topologyKey": "kubernetes.io/hostname"}}]}}
    zones = [{"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "ScheduleAnyway",
              "labelSelector": {"matchLabels": selector}}]
    pod = {**pod_extras(o), "securityContext": pod_security(o), "affinity": spread, "topologySpreadConstraints": zones,
           "terminationGracePeriodSeconds": 30, "containers": [container],
           "volumes": [cache_volume(target, read_only=False), token_volume(o), tmp_volume(), *ca_volume(o),
                       *auth_volume(o)]}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": meta(o, f"{target.base}-mirror", "mirror", target, model=False),
        "spec": {
            "replicas": o.mirror_replicas,
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "selector": {"matchLabels": selector},
            "template": {"metadata": {"labels": {**labels(o, "mirror", target, model=False), **selector},
                                      "annotations": _scrape(o)},
                         "spec": pod},
        },
    }


def mirror_service(o: RenderOptions, target: Target) -> dict[str, object]:
    """The ClusterIP Service in front of the mirror replicas (Prometheus scrape annotations set)."""
    obj = meta(o, f"{target.base}-mirror", "mirror", target, model=False, extra_annotations=_scrape(o))
    return {"apiVersion": "v1", "kind": "Service", "metadata": obj,
            "spec": {"type": "ClusterIP", "selector": mirror_selector(target),
                     "ports": [{"name": "http", "port": o.serve_port, "targetPort": "http", "protocol": "TCP"}]}}


def mirror_pdb(o: RenderOptions, target: Target) -> dict[str, object]:
    """The PodDisruptionBudget that keeps at least one mirror replica up."""
    return {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
            "metadata": meta(o, f"{target.base}-mirror", "mirror", target, model=False),
            "spec": {"minAvailable": 1, "selector": {"matchLabels": mirror_selector(target)}}}


def mirror_url(o: RenderOptions, target: Target) -> str:
    """The in-cluster URL of the mirror Service (``http://<base>-mirror.<ns>.svc:<port>``)."""
    return f"http://{target.base}-mirror.{o.namespace}.svc:{o.serve_port}"


def mirror_objects(o: RenderOptions, target: Target) -> tuple[dict[str, object], ...]:
    """The mirror's Deployment, Service and PodDisruptionBudget."""
    return (mirror_deployment(o, target), mirror_service(o, target), mirror_pdb(o, target))
