"""Apply rendered objects, wait for the download Job with progress, say why it failed.

Works against anything with ``KubeApi``'s methods (the real client in use, the same client
against a fake API server in the tests). Rules that keep a cluster safe:

- a Secret template (no value) is never applied: it could only make an empty Secret, and a
  filled one already there is left alone;
- an existing PVC is left as it is (a size change is reported, not forced);
- a Job whose spec is unchanged and has not failed is watched, not recreated; a failed or
  changed one is deleted and created anew (a Job's pod template is immutable).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..errors import ModelCacheError
from .diagnose import (
    Diagnosis,
    diagnose_job,
    diagnose_pod,
    last_progress,
    progress_text,
)
from .pending import diagnose_job_events, diagnose_pending, diagnose_pvc, pod_claims
from .render import spec_hash

__all__ = ["ApplyResult", "JobFailed", "JobState", "apply_objects", "explain", "job_progress", "job_state",
           "pending_reason", "wait_for_job"]

ORDER = ["Secret", "ConfigMap", "ServiceAccount", "Role", "RoleBinding", "PersistentVolumeClaim", "Service",
         "Deployment", "PodDisruptionBudget", "Job", "PodTemplate", "CronJob", "DaemonSet"]
STOPPERS = {"image-pull", "config", "pvc-no-storageclass", "pvc-lost", "pod-forbidden"}
"""Pod states the Job never leaves by itself (it would wait for its deadline): fail at once."""


class Api(Protocol):
    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None: ...
    def apply(self, obj: dict[str, Any], force: bool = False) -> dict[str, Any]: ...
    def delete(self, kind: str, namespace: str, name: str) -> None: ...
    def list(self, kind: str, namespace: str, selector: str) -> list[dict[str, Any]]: ...
    def pods(self, namespace: str, selector: str) -> list[dict[str, Any]]: ...
    def log(self, namespace: str, pod: str, container: str, tail: int = 50) -> str: ...
    def events(self, namespace: str, kind: str, name: str) -> list[dict[str, Any]]: ...


class JobFailed(ModelCacheError):
    """Raised when a download Job failed; ``diagnosis`` says why, and sets the exit code."""

    code = "job-failed"

    def __init__(self, job: str, diagnosis: Diagnosis) -> None:
        super().__init__(f"Job {job} failed: {diagnosis.message}", diagnosis.hint)
        self.diagnosis = diagnosis
        self.exit_code = diagnosis.exit_code


@dataclass
class ApplyResult:
    """What ``apply_objects`` did: objects applied, objects skipped, download Jobs to wait for."""

    applied: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    jobs: list[tuple[str, str]] = field(default_factory=list)
    """(namespace, name) of every download Job, to wait for."""


def _key(obj: dict[str, Any]) -> str:
    return f"{obj['kind']}/{obj['metadata']['name']}"


def _gone(api: Api, ns: str, name: str, sleep: Callable[[float], None], tries: int = 120) -> None:
    for _ in range(tries):
        if api.get("Job", ns, name) is None:
            return
        for pod in api.pods(ns, f"job-name={name}"):
            stuck = diagnose_pending(pod, [])
            if stuck is not None and stuck.reason == "terminating":
                raise ModelCacheError(f"the old Job {name} cannot be replaced: {stuck.message}", stuck.hint)
        sleep(0.5)
    raise ModelCacheError(f"the old Job {name} is still being deleted", "wait a moment and apply again")


def apply_objects(api: Api, objects: Iterable[dict[str, Any]], echo: Callable[[str], None],
                  sleep: Callable[[float], None] = time.sleep, force: bool = False) -> ApplyResult:
    """Apply ``objects`` in dependency order, echoing one line per object.

    A Secret template without a value is never applied; an existing PVC is left as is; an unchanged
    Job that has not failed is watched, not replaced; a changed or failed one is deleted and
    recreated (``sleep`` while it goes). Raises what ``api`` raises.
    """
    result = ApplyResult()
    objs = sorted(objects, key=lambda o: ORDER.index(o["kind"]) if o["kind"] in ORDER else len(ORDER))
    for obj in objs:
        kind, ns, name = obj["kind"], obj["metadata"]["namespace"], obj["metadata"]["name"]
        if kind == "Secret" and not obj.get("data") and not obj.get("stringData"):
            there = api.get(kind, ns, name) is not None
            echo(f"{_key(obj)}: template without a value, not applied"
                 + ("; the Secret already exists" if there else
                    "; it does not exist, so the Job runs without a token (fine for public models)"))
            result.skipped.append(_key(obj))
            continue
        if kind == "PersistentVolumeClaim":
            existing = api.get(kind, ns, name)
            if existing is not None:
                have = existing.get("spec", {}).get("resources", {}).get("requests", {}).get("storage")
                want = obj["spec"]["resources"]["requests"]["storage"]
                echo(f"{_key(obj)}: exists ({have}), left as is" + (
                    f"; the manifest asks {want}: grow it with kubectl patch if its StorageClass allows"
                    if have != want else ""))
                result.skipped.append(_key(obj))
                continue
        if kind == "Job":
            obj["metadata"].setdefault("annotations", {})["modelcache.io/spec-hash"] = spec_hash(obj)
            existing = api.get(kind, ns, name)
            if existing is not None:
                same = existing["metadata"].get("annotations", {}).get("modelcache.io/spec-hash") == spec_hash(obj)
                if same and job_state(existing).phase != "failed":
                    echo(f"{_key(obj)}: unchanged and {job_state(existing).phase}, watching it")
                    result.jobs.append((ns, name))
                    result.skipped.append(_key(obj))
                    continue
                echo(f"{_key(obj)}: {'failed' if same else 'changed'}, replacing it")
                api.delete(kind, ns, name)
                _gone(api, ns, name, sleep)
            result.jobs.append((ns, name))
        api.apply(obj, force=force)
        echo(f"{_key(obj)}: applied")
        result.applied.append(_key(obj))
        if kind == "Job":
            _say_token(api, obj, objs, echo)
    return result


def _say_token(api: Api, job: dict[str, Any], objs: list[dict[str, Any]], echo: Callable[[str], None]) -> None:
    """Whether the token Secret the Job mounts is there (it is optional: public models need none)."""
    ns = job["metadata"]["namespace"]
    for vol in job["spec"]["template"]["spec"].get("volumes") or []:
        name = (vol.get("secret") or {}).get("secretName")
        if not name or vol.get("name") != "hf-token" or any(
                o["kind"] == "Secret" and o["metadata"]["name"] == name for o in objs):
            continue
        try:
            missing = api.get("Secret", ns, name) is None
        except ModelCacheError:  # no right to read Secrets: nothing to say, not a failure
            continue
        if missing:
            echo(f"Secret/{name}: not found, so the Job runs without a token (fine for a public model; for a gated "
                 f"one: kubectl -n {ns} create secret generic {name} --from-file=HF_TOKEN=PATH, then apply again)")


@dataclass(frozen=True)
class JobState:
    """Where a Job is: its phase and, once it ended, the condition's reason."""

    phase: str
    """``complete``, ``failed`` or ``running``."""
    reason: str = ""


def job_state(job: dict[str, Any]) -> JobState:
    """The state of ``job`` from its ``Complete``/``Failed`` conditions (``running`` when neither is true)."""
    for cond in (job.get("status") or {}).get("conditions") or []:
        if cond.get("status") == "True" and cond.get("type") in ("Complete", "Failed"):
            return JobState("complete" if cond["type"] == "Complete" else "failed", cond.get("reason", ""))
    return JobState("running")


def explain(api: Api, ns: str, name: str, job: dict[str, Any]) -> Diagnosis | None:
    """The reason a Job's pods give (newest first), else the Job's own."""
    pods = sorted(api.pods(ns, f"job-name={name}"),
                  key=lambda p: p.get("metadata", {}).get("creationTimestamp") or "", reverse=True)
    for pod in pods:
        logs = {c.get("name", ""): api.log(ns, pod["metadata"]["name"], c.get("name", ""))
                for c in pod.get("spec", {}).get("containers") or []}
        found = diagnose_pod(pod, logs)
        if found:
            return found
    return diagnose_job(job)


def pending_reason(api: Api, ns: str, pod: dict[str, Any]) -> Diagnosis | None:
    """Why a pod of ours is not running: a PVC not bound, the scheduler, a volume, stuck terminating."""
    phase = (pod.get("status") or {}).get("phase")
    if phase not in (None, "Pending") and not (pod.get("metadata") or {}).get("deletionTimestamp"):
        return None
    if phase in (None, "Pending"):
        for claim in pod_claims(pod):
            try:
                pvc = api.get("PersistentVolumeClaim", ns, claim)
            except ModelCacheError:  # no right to read PVCs: diagnose from the pod alone
                break
            if pvc is None:
                return Diagnosis("pvc-pending", f"PVC {claim} does not exist", "apply pvc.yaml (render's output)", 1)
            found = diagnose_pvc(pvc, api.events(ns, "PersistentVolumeClaim", claim))
            if found:
                return found
    pod_name = (pod.get("metadata") or {}).get("name", "")
    return diagnose_pending(pod, api.events(ns, "Pod", pod_name) if phase in (None, "Pending") else [])


def job_progress(api: Api, ns: str, name: str) -> str | None:
    """The latest download progress line of the Job's running pod, or None."""
    for pod in api.pods(ns, f"job-name={name}"):
        if (pod.get("status") or {}).get("phase") == "Running":
            rec = last_progress(api.log(ns, pod["metadata"]["name"], "download", tail=20))
            if rec:
                return progress_text(rec)
    return None


def wait_for_job(api: Api, ns: str, name: str, echo: Callable[[str], None], *, timeout: float,
                 interval: float = 5.0, sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic) -> None:
    """Until the Job completes (return) or cannot (``JobFailed``); progress lines as it goes."""
    deadline = clock() + timeout
    last = ""
    while True:
        job = api.get("Job", ns, name)
        if job is None:
            raise ModelCacheError(f"Job {name} is gone", "it was deleted (or its TTL ran out); apply again")
        state = job_state(job)
        if state.phase == "complete":
            echo(f"Job/{name}: complete")
            return
        if state.phase == "failed":
            raise JobFailed(name, explain(api, ns, name, job) or
                            Diagnosis("failed", state.reason or "no reason given", f"kubectl -n {ns} describe job {name}"))
        note = None
        pods = api.pods(ns, f"job-name={name}")
        for found in ([diagnose_job_events(name, api.events(ns, "Job", name))] if not pods else []):
            if found and found.reason in STOPPERS:
                raise JobFailed(name, found)
            if found:
                note = f"pending: {found.message} (hint: {found.hint})"
        for pod in pods:
            found = diagnose_pod(pod) or pending_reason(api, ns, pod)
            if found and found.reason in STOPPERS:
                raise JobFailed(name, found)
            if found and not note:
                note = f"pending: {found.message} (hint: {found.hint})"
        note = job_progress(api, ns, name) or note or "waiting for the pod"
        if note != last:
            echo(f"Job/{name}: {note}")
            last = note
        if clock() >= deadline:
            raise ModelCacheError(f"gave up waiting for Job {name} after {timeout:.0f}s; it goes on in the cluster",
                                  f"follow it with: modelcache k8s status ... --namespace {ns}")
        sleep(interval)
