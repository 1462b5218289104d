"""Which revisions running pods use, from the Kubernetes API (read-only): GC's "in use".

Engine pods mount the cache read-only, so they cannot take a lease or record a use. Kubernetes
knows who runs: the rendered engine template labels its pods ``modelcache.io/consumer=true``
and annotates them with ``modelcache.io/repo-id`` and ``modelcache.io/commit``. GC (with a
ServiceAccount allowed to list pods) treats the revision of every pod that has not terminated
— Pending, Running or Unknown, even while being deleted — as leased. Listing is the only call.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import InvalidInput
from ..validation import is_commit, validate_repo_id
from .names import check_label

__all__ = ["COMMIT_ANNOTATION", "CONSUMER_LABEL", "REPO_ANNOTATION", "SELECTOR", "InCluster", "PodUse", "in_use",
           "list_pod_uses", "pod_uses"]

CONSUMER_LABEL = "modelcache.io/consumer"
SELECTOR = f"{CONSUMER_LABEL}=true"
REPO_ANNOTATION = "modelcache.io/repo-id"
COMMIT_ANNOTATION = "modelcache.io/commit"
_DONE = ("Succeeded", "Failed")


@dataclass(frozen=True)
class PodUse:
    """One live pod using one revision."""

    namespace: str
    pod: str
    repo_id: str
    commit: str


def pod_uses(pods: Iterable[Mapping[str, Any]]) -> tuple[list[PodUse], list[str]]:
    """(uses, notes) from pod objects as the API returns them. Pure.

    A terminated pod uses nothing; a pod whose annotations do not name a valid repo id and a
    40-hex commit is skipped with a note (it cannot point GC at anything).
    """
    uses, notes = [], []
    for pod in pods:
        meta = pod.get("metadata") or {}
        phase = (pod.get("status") or {}).get("phase")
        if phase in _DONE:
            continue
        name, ns = str(meta.get("name", "?")), str(meta.get("namespace", "?"))
        notes_of = meta.get("annotations") or {}
        repo, commit = notes_of.get(REPO_ANNOTATION), notes_of.get(COMMIT_ANNOTATION)
        try:
            if not isinstance(repo, str) or not isinstance(commit, str) or not is_commit(commit):
                raise InvalidInput("", "")
            validate_repo_id(repo)
        except InvalidInput:
            notes.append(f"pod {ns}/{name} has no valid {REPO_ANNOTATION}/{COMMIT_ANNOTATION} annotations: ignored")
            continue
        uses.append(PodUse(ns, name, repo, commit))
    return uses, notes


def in_use(uses: Iterable[PodUse]) -> dict[tuple[str, str], str]:
    """``{(repo_id, commit): "in use by pod ns/name"}`` — GC's protection map."""
    out: dict[tuple[str, str], str] = {}
    for u in uses:
        out.setdefault((u.repo_id, u.commit), f"in use by pod {u.namespace}/{u.pod}")
    return out


SERVICE_ACCOUNT = "/var/run/secrets/kubernetes.io/serviceaccount"


@dataclass(frozen=True)
class InCluster:
    """The pod's own ServiceAccount: what the GC CronJob runs with (no kubeconfig, no client library)."""

    api: str
    """``https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT``."""
    token_path: str = f"{SERVICE_ACCOUNT}/token"
    ca_path: str | None = f"{SERVICE_ACCOUNT}/ca.crt"

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> InCluster | None:
        """The API server from ``KUBERNETES_SERVICE_HOST``/``PORT``; None outside a cluster."""
        host = env.get("KUBERNETES_SERVICE_HOST")
        if not host:
            return None
        host = f"[{host}]" if ":" in host else host
        return cls(f"https://{host}:{env.get('KUBERNETES_SERVICE_PORT', '443')}")


def _pods_in_cluster(where: InCluster, namespace: str, selector: str) -> list[dict[str, Any]]:
    """``GET /api/v1/namespaces/NS/pods?labelSelector=…`` with the ServiceAccount's token (re-read
    each time: it is rotated), over httpx — the image needs no Kubernetes client for GC."""
    import httpx

    from ..errors import EndpointUnreachable
    from .cluster import ClusterError

    try:
        with open(where.token_path, encoding="utf-8") as fh:
            token = fh.read().strip()
    except OSError as exc:
        raise ClusterError(f"cannot read the ServiceAccount token {where.token_path}: {exc.strerror}",
                           "run gc as the rendered CronJob (serviceAccountName), or pass --kubeconfig") from None
    verify: bool | str = where.ca_path if where.ca_path else True
    url = f"{where.api}/api/v1/namespaces/{namespace}/pods"
    try:
        resp = httpx.get(url, params={"labelSelector": selector}, headers={"Authorization": f"Bearer {token}"},
                         verify=verify, timeout=30.0)
    except httpx.HTTPError as exc:
        raise EndpointUnreachable(f"cannot reach the Kubernetes API at {where.api} ({type(exc).__name__})",
                                  "gc removes nothing without knowing which revisions pods use") from None
    if resp.status_code != 200:
        hint = (f"give the ServiceAccount a Role that may list pods in {namespace} (the rendered gc-cronjob.yaml has one)"
                if resp.status_code in (401, 403) else "gc removes nothing without knowing which revisions pods use")
        raise ClusterError(f"the Kubernetes API refused to list pods in {namespace} (HTTP {resp.status_code})", hint)
    try:
        items = resp.json().get("items") or []
    except (ValueError, AttributeError):
        raise ClusterError("the Kubernetes API answered the pod list with something that is not a list",
                           "check --k8s-namespace and the API server") from None
    return [p for p in items if isinstance(p, dict)]


def list_pod_uses(namespaces: Iterable[str], *, kubeconfig: str | None = None, context: str | None = None,
                  in_cluster: InCluster | None = None, selector: str = SELECTOR) -> tuple[list[PodUse], list[str]]:
    """List consumer pods in each namespace: in a pod (``in_cluster``, no ``kubeconfig``) with its
    ServiceAccount over plain HTTPS, else through the official client and a kubeconfig.

    Raises ``ClusterError``/``EndpointUnreachable`` when the API cannot be asked: GC must then
    remove nothing (it cannot know what is in use)."""
    namespaces = [check_label(ns, "namespace", "--k8s-namespace") for ns in namespaces]
    pods: list[dict[str, Any]] = []
    if in_cluster is not None and not kubeconfig and not context:
        for ns in namespaces:
            pods.extend(_pods_in_cluster(in_cluster, ns, selector))
        return pod_uses(pods)
    from .cluster import KubeApi

    api = KubeApi(kubeconfig, context, in_cluster=False)
    for ns in namespaces:
        pods.extend(api.pods(ns, selector))
    return pod_uses(pods)
