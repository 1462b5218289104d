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

__all__ = ["COMMIT_ANNOTATION", "CONSUMER_LABEL", "REPO_ANNOTATION", "SELECTOR", "PodUse", "in_use", "list_pod_uses",
           "pod_uses"]

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


def list_pod_uses(namespaces: Iterable[str], *, kubeconfig: str | None = None, context: str | None = None,
                  in_cluster: bool = False, selector: str = SELECTOR) -> tuple[list[PodUse], list[str]]:
    """List consumer pods in each namespace. Raises ``ClusterError``/``EndpointUnreachable`` when the
    API cannot be asked: GC must then remove nothing (it cannot know what is in use)."""
    from .cluster import KubeApi

    api = KubeApi(kubeconfig, context, in_cluster=in_cluster)
    pods: list[dict[str, Any]] = []
    for ns in namespaces:
        pods.extend(api.pods(ns, selector))
    return pod_uses(pods)
