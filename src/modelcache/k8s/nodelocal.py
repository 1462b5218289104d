"""The node-local tier: a DaemonSet that keeps the declared set on each selected node's disk. Pure.

Each pod runs ``modelcache sync -f … --label-node $(NODE_NAME) --interval …`` into a hostPath
(``DirectoryOrCreate``), pulling from the cluster mirror (``serve --upstream``), and labels its
own node ``modelcache.io/<model-key>=<commit12>`` when a model is ready; the label is removed
before GC or an unpin can remove the model's files. Engine templates require that label (node
affinity ``In [commit12]``) and mount the same host path read-only.

RBAC: Kubernetes cannot grant "patch only your own node" (``resourceNames`` is fixed in the
role, not per pod), so the ClusterRole allows ``get``/``patch`` on nodes, and the pod passes
its ``spec.nodeName`` (downward API) as ``NODE_NAME``: ``sync`` refuses any other node and
changes only ``modelcache.io/<model-key>`` labels.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from .._format import human_size
from ._pod import (
    CACHE_VOLUME,
    ca_mount,
    ca_volume,
    container_security,
    env,
    network_env,
    pod_extras,
    pod_security,
    tmp_mount,
    tmp_volume,
    token_mount,
    token_volume,
    user_env,
)
from .modelset import (
    SPEC_PATH,
    SetModel,
    SetOptions,
    pods_reader,
    set_engine_template,
    set_labels,
    set_meta,
    spec_configmap,
    spec_mount,
    spec_volume,
    sync_command,
)
from .render import Manifest

__all__ = ["daemonset", "node_affinity", "node_engine_template", "rbac", "render_node_local"]

RBAC_API = "rbac.authorization.k8s.io/v1"


def _sa_name(so: SetOptions) -> str:
    return f"{so.set_name}-node-sync"


def _role_name(so: SetOptions) -> str:
    """Cluster-scoped: the namespace is in the name, so two namespaces' sets never share a role."""
    return f"modelcache-{so.base.namespace}-{so.set_name}-node-labeller"


def _cluster_meta(so: SetOptions, name: str) -> dict[str, object]:
    return {"name": name, "labels": set_labels(so, "node-sync")}


def rbac(so: SetOptions) -> tuple[dict[str, object], ...]:
    """ServiceAccount, a ClusterRole allowing only get/patch on nodes, and its binding; a Role to
    list pods in the namespace (GC keeps what engines on the node use)."""
    sa = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": set_meta(so, _sa_name(so), "node-sync")}
    role = {"apiVersion": RBAC_API, "kind": "ClusterRole", "metadata": _cluster_meta(so, _role_name(so)),
            "rules": [{"apiGroups": [""], "resources": ["nodes"], "verbs": ["get", "patch"]}]}
    binding = {"apiVersion": RBAC_API, "kind": "ClusterRoleBinding", "metadata": _cluster_meta(so, _role_name(so)),
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": _role_name(so)},
               "subjects": [{"kind": "ServiceAccount", "name": _sa_name(so), "namespace": so.base.namespace}]}
    return sa, role, binding, *pods_reader(so, _sa_name(so), "node-sync")


def _in_cluster_http(url: str) -> bool:
    """A plain-HTTP in-cluster Service (the mirror): the token goes there on purpose (it checks it upstream)."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    return parts.scheme == "http" and (host.endswith(".svc") or host.endswith(".svc.cluster.local"))


def daemonset(so: SetOptions) -> dict[str, object]:
    """The node-sync DaemonSet: ``modelcache sync`` into the hostPath on each selected node, labelling it.

    Needs ``so.node_local`` and ``so.mirror_url`` set.
    """
    o = so.base
    assert so.node_local is not None and so.mirror_url is not None
    insecure = o.allow_insecure_token or _in_cluster_http(so.mirror_url)
    command = sync_command(so, so.mirror_url, insecure, "--label-node", "$(NODE_NAME)", "--interval", so.interval)
    node_env = [{"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}]
    cache = {"name": CACHE_VOLUME, "mountPath": o.mount_path}
    container = {
        "name": "node-sync",
        "image": o.image,
        "imagePullPolicy": "IfNotPresent",
        "command": command,
        "env": node_env + env(HF_HOME=o.mount_path, PYTHONUNBUFFERED="1", **network_env(o), **user_env(o)),
        "resources": {"requests": {"cpu": o.cpu, "memory": o.memory}, "limits": {"memory": o.memory}},
        "securityContext": container_security(),
        "volumeMounts": [cache, spec_mount(), token_mount(), tmp_mount(), *ca_mount(o)],
    }
    # hostPath is made by the kubelet as root (0755), and fsGroup does not apply to it: one
    # root step with CAP_CHOWN alone hands the folder to our user; nothing else runs as root.
    prepare = {
        "name": "own-cache-dir",
        "image": o.image,
        "imagePullPolicy": "IfNotPresent",
        "command": ["chown", f"{o.run_as_user}:{o.fs_group}", o.mount_path],
        "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}, "limits": {"memory": "64Mi"}},
        "securityContext": {"runAsUser": 0, "runAsNonRoot": False, "allowPrivilegeEscalation": False,
                            "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"], "add": ["CHOWN"]}},
        "volumeMounts": [cache],
    }
    selector = set_labels(so, "node-sync")
    pod = {**pod_extras(o, api_access=True), "serviceAccountName": _sa_name(so), "securityContext": pod_security(o),
           "terminationGracePeriodSeconds": 30, "initContainers": [prepare], "containers": [container],
           "volumes": [{"name": CACHE_VOLUME, "hostPath": {"path": so.node_local, "type": "DirectoryOrCreate"}},
                       spec_volume(so), token_volume(o), tmp_volume(), *ca_volume(o)]}
    return {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": set_meta(so, f"{so.set_name}-node-sync", "node-sync"),
        "spec": {"selector": {"matchLabels": selector},
                 "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "10%"}},
                 "template": {"metadata": {"labels": selector}, "spec": pod}},
    }


def node_affinity(m: SetModel) -> dict[str, object]:
    """Required: only nodes whose label says this commit is ready on local disk."""
    assert m.commit is not None
    return {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchExpressions": [{"key": m.label_key, "operator": "In", "values": [m.commit[:12]]}]}]}}}


def node_engine_template(so: SetOptions, m: SetModel) -> dict[str, object]:
    """The shared-volume template, with the cache on the node's disk (read-only) and the node affinity."""
    tpl = set_engine_template(so, m)
    spec = tpl["template"]["spec"]  # type: ignore[index]
    spec["volumes"] = [{"name": CACHE_VOLUME, "hostPath": {"path": so.node_local, "type": "Directory"}}
                       if v.get("name") == CACHE_VOLUME else v for v in spec["volumes"]]
    spec["affinity"] = node_affinity(m)
    return tpl


def render_node_local(so: SetOptions) -> list[Manifest]:
    """The node-local tier's manifest files: spec ConfigMap, RBAC, DaemonSet and engine templates.

    Engine templates only for served models; the Secret comes first when it is filled.
    """
    o = so.base
    need = (f"each node needs {human_size(so.model_bytes)} free at {so.node_local} (plus room for the next revisions)"
            if so.model_bytes is not None else f"each node needs room at {so.node_local} for every declared model")
    out = [Manifest("sync-spec.yaml", ("The declared set (modelcache.yaml); the DaemonSet re-reads it every run.",),
                    (spec_configmap(so),)),
           Manifest("node-rbac.yaml", (
               "The DaemonSet labels its own node. RBAC cannot limit a pod to its own node: the role allows get/patch",
               "on nodes, and sync refuses any node but $NODE_NAME (spec.nodeName) and any label but modelcache.io/<model-key>.",
               f"It may also list pods in {o.namespace}: its GC keeps every revision a live engine pod uses.",
           ), rbac(so)),
           Manifest("node-sync-daemonset.yaml", (
               f"On each selected node: modelcache sync -f {SPEC_PATH} into {so.node_local} (hostPath) from {so.mirror_url},",
               f"every {so.interval}; labels the node modelcache.io/<model-key>=<commit12> per ready model, and removes the",
               f"label before GC or an unpin can remove the files; {need}.",
           ), (daemonset(so),))]
    served = [m for m in so.models if m.served]
    if served:
        out.append(Manifest("engine-template.yaml", (
            "One engine template per served model: required node affinity on modelcache.io/<model-key>=<commit12>,",
            f"the model read-only from {so.node_local} on that node. Copy initContainers, volumes, affinity, "
            "imagePullSecrets and the engine container's env/volumeMounts into your engine pod spec.",
        ), tuple(node_engine_template(so, m) for m in served)))
    if o.filled:
        from .storage import secret

        out.insert(0, Manifest("secret.yaml", (f"Secret {o.secret}: FILLED with a token (--token-file). "
                                               "Do not commit this file.",), (secret(o),), sensitive=True))
    return out
