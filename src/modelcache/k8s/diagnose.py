"""Why a download pod cannot succeed, from its status and log: pure functions over API dicts.

The dicts are what ``kubectl get -o json`` shows (camelCase), so these rules are tested
without a cluster. The log is the download container's: our CLI's last ``error:`` line (what,
why) and its ``hint:`` travel into the message.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from .._format import human_size

__all__ = ["Diagnosis", "LoggedError", "diagnose_job", "diagnose_pod", "last_error", "last_progress", "parse_error",
           "progress_text"]

IMAGE_PULL = {"ImagePullBackOff", "ErrImagePull", "InvalidImageName", "ErrImageNeverPull", "RegistryUnavailable"}


@dataclass(frozen=True)
class Diagnosis:
    """Why a download pod fails (or is stuck pending): a reason, a one-line message and hint, an exit code."""

    reason: str
    """``image-pull``, ``config``, ``token-rejected``, ``gated``, ``out-of-disk``, ``permission-denied``,
    ``cache-unusable``, ``oom``, ``not-found``, ``bad-input``, ``network``, ``integrity``, ``evicted``,
    ``deadline``, ``failed``; while pending (``pending``): ``unschedulable``, ``pvc-pending``,
    ``volume``, ``terminating``."""
    message: str
    hint: str
    exit_code: int = 1
    """The CLI's exit code for it (4 token/gated, 7 disk, 3 not found, 5 network, else 1)."""


@dataclass(frozen=True)
class LoggedError:
    """Our CLI's last error in a log: from a ``--json`` line, or the ``error:``/``hint:`` lines."""

    message: str
    hint: str = ""
    code: str = ""
    """The error's ``code`` (``cache``, ``gated-repo``, ``auth``…) when the line was JSON."""

    def text(self) -> str:
        """The message, with ``(hint: …)`` when there is a hint."""
        return self.message + (f" (hint: {self.hint})" if self.hint else "")


def _json_line(line: str) -> dict[str, Any] | None:
    if not line.startswith("{"):
        return None
    try:
        rec = json.loads(line)
    except ValueError:
        return None
    return rec if isinstance(rec, dict) else None


def parse_error(log: str) -> LoggedError | None:
    """The last error our CLI printed. Progress records and other output are never read as one."""
    lines = log.splitlines()
    for i in range(len(lines) - 1, -1, -1):
        line = lines[i].strip()
        rec = _json_line(line)
        if rec is not None:
            if isinstance(rec.get("error"), str) and isinstance(rec.get("message"), str):
                return LoggedError(rec["message"], str(rec.get("hint") or ""), rec["error"])
            continue
        if lines[i].startswith("error: "):
            hint = ""
            if i + 1 < len(lines) and lines[i + 1].strip().startswith("hint: "):
                hint = lines[i + 1].strip()[len("hint: "):]
            return LoggedError(lines[i][len("error: "):].strip(), hint)
    return None


def last_error(log: str) -> str | None:
    """Our CLI's last error (with its hint) as one line, if the log has one."""
    found = parse_error(log)
    return found.text() if found else None


def _plain_lines(log: str) -> str:
    """The log without its JSON records (progress carries numbers such as 401 in byte counts)."""
    return "\n".join(line for line in log.splitlines() if _json_line(line.strip()) is None).lower()


def last_progress(log: str) -> dict[str, Any] | None:
    """The last JSON progress record our download printed (``{"event": …}``)."""
    for line in reversed(log.splitlines()):
        line = line.strip()
        if line.startswith("{") and '"event"' in line:
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if isinstance(rec, dict) and "bytes_done" in rec:
                return rec
    return None


def progress_text(rec: dict[str, Any]) -> str:
    """A progress record as one line: ``42.0% 1.2 GiB/3.0 GiB, files 3/9, 80 MiB/s, ETA 23s``."""
    total, done = int(rec.get("bytes_total") or 0), int(rec.get("bytes_done") or 0)
    pct = 100.0 * done / total if total else 100.0
    eta = rec.get("eta_s")
    return (f"{pct:5.1f}% {human_size(done)}/{human_size(total)}, files {rec.get('files_done', 0)}/"
            f"{rec.get('files_total', 0)}, {human_size(rec.get('rate_bps') or 0)}/s"
            + (f", ETA {eta:.0f}s" if isinstance(eta, (int, float)) else ""))


def _statuses(pod: dict[str, Any]) -> list[dict[str, Any]]:
    status = pod.get("status") or {}
    return list(status.get("initContainerStatuses") or []) + list(status.get("containerStatuses") or [])


def _limit(pod: dict[str, Any], container: str) -> str:
    for c in (pod.get("spec") or {}).get("containers") or []:
        if c.get("name") == container:
            return str(((c.get("resources") or {}).get("limits") or {}).get("memory", "none"))
    return "unknown"


def _secret(pod: dict[str, Any]) -> str:
    for v in (pod.get("spec") or {}).get("volumes") or []:
        if isinstance(v.get("secret"), dict) and v["secret"].get("secretName"):
            return str(v["secret"]["secretName"])
    return "hf-token-secret"


_FULL = ("no space left", "disk quota exceeded", "is full", "budget")
_FREE = re.compile(r"[0-9.]+ ?[kmgtpe]?i?b free")
_DENIED = ("permission denied", "operation not permitted", "read-only file system", "cannot write to the cache")


def _cache_unusable(said: str, text: str) -> Diagnosis:
    """Exit 7, split: a full volume (grow it) is not a volume the user cannot write (fix ownership)."""
    if any(w in text for w in _DENIED):
        return Diagnosis("permission-denied", f"the cache volume is not writable by the pod — {said}",
                         "the volume's root must be writable by --run-as-user/--fs-group: for an NFS export "
                         "owned by root (root_squash), chown it to that uid/gid on the server or render with "
                         "the export's uid/gid; a volume mounted read-only cannot hold the cache", 7)
    if any(w in text for w in _FULL) or _FREE.search(text):
        return Diagnosis("out-of-disk", f"the cache volume is full — {said}",
                         "give a bigger --size (or grow the PVC if its StorageClass allows expansion), "
                         "or free space with modelcache gc / rm", 7)
    return Diagnosis("cache-unusable", f"the cache cannot be used — {said}", "see the message; check the volume", 7)


def _from_exit(name: str, code: int, log: str, secret: str) -> Diagnosis:
    err = parse_error(log)
    said = f"{name} exited with {code}" + (f": {err.text()}" if err else "")
    said_low = (err.text() if err else "").lower()
    plain = _plain_lines(log)
    if code == 7 or (err is None and "no space left on device" in plain):
        return _cache_unusable(said, said_low or plain)
    if code == 4 and (err is not None and (err.code == "gated-repo" or "gated" in said_low)):
        return Diagnosis("gated", f"the repo is gated and the token has no access — {said}",
                         "accept the model's conditions on its Hub page with the token's account", 4)
    if code == 4:
        return Diagnosis("token-rejected", f"the Hub rejected the token — {said}",
                         f"put a valid token in the Secret {secret} (key HF_TOKEN): kubectl create secret generic "
                         f"{secret} --from-file=HF_TOKEN=PATH, then apply again", 4)
    if code == 3:
        return Diagnosis("not-found", f"the Hub does not have it — {said}", "check the repo id and --revision", 3)
    if code == 2:
        return Diagnosis("bad-input", said, "re-render the manifests with `modelcache k8s render`", 1)
    if code == 5:
        return Diagnosis("network", f"the Hub was unreachable — {said}",
                         "check the cluster's egress (--proxy, NetworkPolicy, --ca-bundle) or --job-endpoint", 5)
    if code == 6:
        return Diagnosis("integrity", said, "bytes did not match their hash; the Job retries", 6)
    return Diagnosis("failed", said, "see kubectl logs for the pod", 1)


def diagnose_pod(pod: dict[str, Any], logs: dict[str, str] | None = None) -> Diagnosis | None:
    """What stops this pod, or None. ``logs``: container name → log text."""
    logs = logs or {}
    status = pod.get("status") or {}
    if status.get("reason") == "Evicted":
        return Diagnosis("evicted", f"the pod was evicted: {status.get('message', '')}".strip(),
                         "the node ran short of a resource; the Job retries on another pod", 1)
    for cs in _statuses(pod):
        name = cs.get("name", "?")
        waiting = (cs.get("state") or {}).get("waiting") or {}
        if waiting.get("reason") in IMAGE_PULL:
            return Diagnosis("image-pull", f"cannot pull image {cs.get('image', '?')}: "
                             f"{waiting.get('message') or waiting['reason']}",
                             "build the Dockerfile's image, push it where the cluster pulls from, and pass "
                             "--image (with imagePullSecrets for a private registry)", 1)
        if waiting.get("reason") == "CreateContainerConfigError":
            return Diagnosis("config", f"{name} cannot start: {waiting.get('message', 'configuration error')}",
                             "a Secret or ConfigMap the pod names is missing", 1)
        terminated = (cs.get("state") or {}).get("terminated") or (cs.get("lastState") or {}).get("terminated")
        if not terminated:
            continue
        if terminated.get("reason") == "OOMKilled":
            return Diagnosis("oom", f"{name} was killed: out of memory (limit {_limit(pod, name)})",
                             "give the Job more memory (--memory), or fewer --connections", 1)
        code = terminated.get("exitCode")
        if isinstance(code, int) and code != 0:
            return _from_exit(name, code, logs.get(name, ""), _secret(pod))
    return None


def diagnose_job(job: dict[str, Any]) -> Diagnosis | None:
    """A Job-level failure no pod explains (deadline)."""
    for cond in (job.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Failed" and cond.get("status") == "True" and cond.get("reason") == "DeadlineExceeded":
            return Diagnosis("deadline", f"the Job ran out of time: {cond.get('message', '')}".strip(),
                             "give more time with --deadline, or check the download rate in the logs", 1)
    return None
