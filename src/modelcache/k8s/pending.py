"""Why a download pod is not running yet: the scheduler's verdict (pod conditions), a PVC that is
not bound, the Events the kubelet and provisioners wrote, a pod stuck terminating. Pure
functions over API dicts (what ``kubectl get -o json`` shows), tested without a cluster.

None of these fail the Job by themselves (a cluster autoscaler may add the node the pod is
waiting for); ``apply`` and ``status`` say them instead of a bare "waiting", and stop only on
what cannot resolve by itself (a StorageClass that does not exist).
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from .diagnose import Diagnosis

__all__ = ["STUCK_AFTER", "diagnose_job_events", "diagnose_pending", "diagnose_pvc", "pod_claims", "warnings_of"]

STUCK_AFTER = 60.0
"""Seconds past a pod's grace period after which "terminating" means "stuck terminating"."""


def _time(text: object) -> datetime | None:
    if not isinstance(text, str):
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


def warnings_of(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Warning events, newest first."""
    def when(e: dict[str, Any]) -> str:
        return str(e.get("lastTimestamp") or e.get("eventTime") or (e.get("metadata") or {}).get("creationTimestamp") or "")
    return sorted((e for e in events if e.get("type") == "Warning"), key=when, reverse=True)


def _event_text(e: dict[str, Any]) -> str:
    return f"{e.get('reason', '?')}: {str(e.get('message', '')).strip()}"[:400]


def pod_claims(pod: dict[str, Any]) -> list[str]:
    """The PVCs a pod mounts."""
    return [str(v["persistentVolumeClaim"]["claimName"]) for v in (pod.get("spec") or {}).get("volumes") or []
            if isinstance(v.get("persistentVolumeClaim"), dict) and v["persistentVolumeClaim"].get("claimName")]


def diagnose_pvc(pvc: dict[str, Any], events: list[dict[str, Any]]) -> Diagnosis | None:
    """A PVC that is not Bound, with what its provisioner said; None when bound (or only waiting
    for its first consumer to be scheduled, which is normal)."""
    name = (pvc.get("metadata") or {}).get("name", "?")
    phase = (pvc.get("status") or {}).get("phase")
    if phase == "Lost":
        return Diagnosis("pvc-lost", f"PVC {name} lost its volume", "the PersistentVolume is gone: recreate the PVC", 1)
    if phase != "Pending":
        return None
    warns = warnings_of(events)
    if not warns:
        if any(e.get("reason") == "WaitForFirstConsumer" for e in events):
            return None
        return Diagnosis("pvc-pending", f"PVC {name} is Pending (not bound to a volume yet)",
                         f"kubectl describe pvc {name}: is there a default StorageClass, or give --storage-class", 1)
    text = _event_text(warns[0])
    sc = (pvc.get("spec") or {}).get("storageClassName")
    if "not found" in text and "storageclass" in text.lower():
        return Diagnosis("pvc-no-storageclass", f"PVC {name} is Pending: {text}",
                         f"the StorageClass {sc!r} does not exist: kubectl get storageclass, then render with "
                         "--storage-class NAME (or none for the default)", 1)
    return Diagnosis("pvc-pending", f"PVC {name} is Pending: {text}",
                     "the provisioner cannot make the volume: check the StorageClass, quota and access mode "
                     "(ReadWriteMany needs a shared filesystem such as NFS, CephFS, EFS, Filestore)", 1)


def diagnose_pending(pod: dict[str, Any], events: list[dict[str, Any]],
                     now: datetime | None = None) -> Diagnosis | None:
    """Why a pod that has not started (or will not go) is stuck; None when nothing is wrong yet."""
    meta = pod.get("metadata") or {}
    status = pod.get("status") or {}
    name = meta.get("name", "?")
    deleted = _time(meta.get("deletionTimestamp"))
    if deleted is not None:
        now = now or datetime.now(timezone.utc)
        grace = meta.get("deletionGracePeriodSeconds") or 30
        if (now - deleted).total_seconds() > STUCK_AFTER:  # deletionTimestamp = request time + grace
            node = (pod.get("spec") or {}).get("nodeName", "its node")
            finalizers = meta.get("finalizers") or []
            return Diagnosis("terminating", f"pod {name} keeps terminating ({grace}s grace long past"
                             + (f"; finalizers {', '.join(finalizers)})" if finalizers else ")"),
                             f"is {node} NotReady (kubectl get node {node})? If the node is gone: "
                             f"kubectl delete pod {name} --grace-period=0 --force", 1)
    for cond in status.get("conditions") or []:
        if cond.get("type") == "PodScheduled" and cond.get("status") == "False" and cond.get("reason") == "Unschedulable":
            msg = str(cond.get("message") or "no node fits")[:400]
            hint = "free or add capacity (--cpu/--memory ask less), or fix --node-selector/--toleration"
            if "affinity" in msg.lower():
                hint = ("ReadWriteOnce: the pod must run on the node of modelcache serve (required affinity); "
                        "is serve running? kubectl get pods -l app.kubernetes.io/component=serve")
            if "persistentvolumeclaim" in msg.lower() or "unbound" in msg.lower():
                hint = "a PVC the pod mounts is not bound: see kubectl describe pvc"
            return Diagnosis("unschedulable", f"pod {name} cannot be scheduled: {msg}", hint, 1)
    if status.get("phase") == "Pending":
        for e in warnings_of(events):
            if e.get("reason") in ("FailedMount", "FailedAttachVolume", "FailedScheduling"):
                text = _event_text(e)
                hint = "kubectl describe pod " + name
                if "multi-attach" in text.lower():
                    hint = ("a ReadWriteOnce volume is attached to another node: run everything that mounts it "
                            "on one node (serve mode does), or use ReadWriteMany")
                return Diagnosis("volume", f"pod {name} is waiting for a volume: {text}", hint, 1)
    return None


def diagnose_job_events(name: str, events: list[dict[str, Any]]) -> Diagnosis | None:
    """A Job without pods: the controller could not create one (a ResourceQuota, a LimitRange,
    Pod Security admission, a webhook). Pod Security will not change by itself: ``pod-forbidden``."""
    for e in warnings_of(events):
        if e.get("reason") != "FailedCreate":
            continue
        text = _event_text(e)
        low = text.lower()
        if "podsecurity" in low or ("forbidden" in low and "quota" not in low):
            return Diagnosis("pod-forbidden", f"Job {name} cannot create its pod: {text}",
                             "the namespace's admission (Pod Security, a policy webhook) refuses the pod: "
                             "adjust the policy or the namespace, then apply again", 1)
        hint = "kubectl describe job " + name
        if "quota" in low:
            hint = "a ResourceQuota is exhausted: free quota, raise it, or ask less (--cpu/--memory)"
        return Diagnosis("pod-create", f"Job {name} cannot create its pod: {text}", hint, 1)
    return None
