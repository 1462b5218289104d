"""Honest diagnoses in ``k8s apply``/``status``: exit 7 split (full vs permission denied), error
lines parsed (never a substring of a progress line), pods that cannot be scheduled, PVCs that
do not bind, Events, pods that keep terminating, 409 conflicts and 422 validation errors — each
against the fake API server through the official client, or as pure functions."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from helpers.k8s import COMMIT, run
from fake_apiserver import FailingPod, NoPod, Pending, fake_apiserver, write_kubeconfig

from modelcache.k8s.diagnose import diagnose_pod, parse_error
from modelcache.k8s.pending import diagnose_pending, diagnose_pvc

pytest.importorskip("kubernetes")

REPO = "org/m"


@pytest.fixture
def manifests(tmp_path: Path) -> Path:
    out = tmp_path / "manifests"
    code, _, err = run("--offline", "k8s", "render", REPO, "--revision", COMMIT, "--size", "20Gi",
                       "--access-mode", "ReadWriteOnce", "-o", str(out))
    assert code == 0, err
    return out


def _kc(srv: Any, tmp_path: Path) -> str:
    return str(write_kubeconfig(tmp_path / "kubeconfig", srv.url))


def apply(srv: Any, tmp_path: Path, path: Path, *extra: str) -> tuple[int, str, str]:
    return run("k8s", "apply", str(path), "--kubeconfig", _kc(srv, tmp_path), "--interval", "0.05", *extra)


def _pod(code: int) -> dict[str, Any]:
    return {"spec": {"containers": [{"name": "download"}]},
            "status": {"phase": "Failed", "containerStatuses": [
                {"name": "download", "state": {"terminated": {"exitCode": code, "reason": "Error"}}}]}}


def _progress(done: int) -> str:
    return json.dumps({"event": "progress", "bytes_done": done, "bytes_total": 401401, "files_done": 1,
                       "files_total": 2, "rate_bps": 401, "eta_s": 1.0}) + "\n"


# -- the log, parsed --------------------------------------------------------------------------
@pytest.mark.parametrize("log, reason", [
    ('{"error": "cache", "message": "the disk holding /model-store/hub is full", "hint": "free space", "exit_code": 7}\n',
     "out-of-disk"),
    ("error: org/m needs 90 GiB but the disk holding /model-store/hub has 2 GiB free\n  hint: use a bigger volume\n",
     "out-of-disk"),
    ('{"error": "cache", "message": "cannot write to the cache at /model-store/hub: Permission denied", '
     '"hint": "give the user write access", "exit_code": 7}\n', "permission-denied"),
    ("error: cannot write to the cache at /model-store/hub: Read-only file system\n", "permission-denied"),
])
def test_exit_7_says_full_or_permission_denied(log: str, reason: str) -> None:
    found = diagnose_pod(_pod(7), {"download": _progress(401) + log})
    assert found is not None and found.reason == reason and found.exit_code == 7
    if reason == "permission-denied":
        assert "--size" not in found.hint and "--run-as-user" in found.hint and "not writable" in found.message
    else:
        assert "--size" in found.hint and "full" in found.message


def test_exit_7_that_is_neither_full_nor_denied_says_neither() -> None:
    log = ("error: org/m: the repo lock /model-store/hub/models--org--m/.modelcache/repo.lock is held for over 120s\n"
           "  hint: is a `modelcache gc` stuck? it is taken over automatically once its holder dies\n")
    found = diagnose_pod(_pod(7), {"download": log})
    assert found is not None and found.reason == "cache-unusable" and "--size" not in found.hint


def test_a_401_in_a_progress_line_is_not_a_rejected_token() -> None:
    log = _progress(401) + _progress(1401) + "error: cannot connect to https://huggingface.co: timed out\n"
    found = diagnose_pod(_pod(5), {"download": log})
    assert found is not None and found.reason == "network" and found.exit_code == 5
    assert "401" not in found.message.split("timed out")[0].split("exited with 5")[0]
    # and a crash without our error line is never read out of the progress numbers either
    found = diagnose_pod(_pod(1), {"download": _progress(401) + " 401 HTTP 401\n"})
    assert found is not None and found.reason == "failed"


def test_json_error_lines_carry_their_code() -> None:
    log = _progress(10) + '{"error": "gated-repo", "message": "org/m: access not granted", "hint": "accept", "exit_code": 4}\n'
    err = parse_error(log)
    assert err is not None and err.code == "gated-repo" and err.hint == "accept"
    found = diagnose_pod(_pod(4), {"download": log})
    assert found is not None and found.reason == "gated"
    found = diagnose_pod(_pod(4), {"download": '{"error": "auth", "message": "token rejected (HTTP 401)"}\n'})
    assert found is not None and found.reason == "token-rejected"


def test_permission_denied_through_apply_and_status(tmp_path: Path) -> None:
    out = tmp_path / "m"
    assert run("--offline", "k8s", "render", REPO, "--revision", COMMIT, "--size", "20Gi", "-o", str(out))[0] == 0
    log = ('{"error": "cache", "message": "cannot write to the cache at /model-store/hub: Permission denied", '
           '"hint": "give the user write access", "exit_code": 7}\n')
    scenario = FailingPod({"ready": False, "state": {"terminated": {"exitCode": 7, "reason": "Error"}}}, log=log)
    with fake_apiserver(scenario) as srv:
        code, _, err = apply(srv, tmp_path, out)
        assert code == 7 and "not writable" in err and "--run-as-user" in err and "bigger --size" not in err
        code, stdout, _ = run("k8s", "status", REPO, "--kubeconfig", _kc(srv, tmp_path), "--json")
        row = json.loads(stdout)["jobs"][0]
        assert code == 7 and row["reason"] == "permission-denied"


# -- pending: the scheduler, the PVC, Events ---------------------------------------------------
def test_unschedulable_pod_is_said_not_waited_on_silently(manifests: Path, tmp_path: Path) -> None:
    msg = "0/3 nodes are available: 3 Insufficient memory. preemption: 0/3 nodes are available."
    with fake_apiserver(Pending(unschedulable=msg)) as srv:
        code, _, err = apply(srv, tmp_path, manifests, "--timeout", "1")
        assert code == 1 and "gave up waiting" in err
        assert "pending: pod m-download-x7k2p cannot be scheduled: 0/3 nodes are available: 3 Insufficient memory" in err
        code, out, _ = run("k8s", "status", REPO, "--kubeconfig", _kc(srv, tmp_path))
        assert code == 1 and "m-download: pending" in out and "Insufficient memory" in out and "hint:" in out


def test_rwo_affinity_hint(manifests: Path, tmp_path: Path) -> None:
    msg = "0/3 nodes are available: 3 node(s) didn't match pod affinity rules."
    with fake_apiserver(Pending(unschedulable=msg)) as srv:
        code, _, err = apply(srv, tmp_path, manifests, "--timeout", "1")
    assert code == 1 and "node of modelcache serve" in err


def test_a_missing_storage_class_stops_at_once(manifests: Path, tmp_path: Path) -> None:
    event = ("ProvisioningFailed", 'storageclass.storage.k8s.io "fast-nfs" not found')
    with fake_apiserver(Pending(pvc_event=event)) as srv:
        code, _, err = apply(srv, tmp_path, manifests, "--timeout", "30")
    assert code == 1 and "error: Job m-download failed: PVC model-cache is Pending" in err
    assert "fast-nfs" in err and "--storage-class" in err


def test_a_pvc_the_provisioner_cannot_make_is_said(manifests: Path, tmp_path: Path) -> None:
    event = ("ProvisioningFailed", "failed to provision volume: ReadWriteMany is not supported by ebs.csi.aws.com")
    with fake_apiserver(Pending(pvc_event=event)) as srv:
        code, _, err = apply(srv, tmp_path, manifests, "--timeout", "1")
    assert code == 1 and "pending: PVC model-cache is Pending: ProvisioningFailed" in err and "ReadWriteMany" in err


def test_multi_attach_event(manifests: Path, tmp_path: Path) -> None:
    event = ("FailedAttachVolume", 'Multi-Attach error for volume "pvc-1" Volume is already used by pod(s) serve-x')
    with fake_apiserver(Pending(pod_event=event)) as srv:
        code, _, err = apply(srv, tmp_path, manifests, "--timeout", "1")
    assert code == 1 and "waiting for a volume: FailedAttachVolume: Multi-Attach" in err and "ReadWriteOnce" in err


def test_pvc_rules_as_pure_functions() -> None:
    pvc = {"metadata": {"name": "c"}, "status": {"phase": "Pending"}, "spec": {}}
    assert diagnose_pvc({**pvc, "status": {"phase": "Bound"}}, []) is None
    assert diagnose_pvc(pvc, [{"type": "Normal", "reason": "WaitForFirstConsumer", "message": "waiting"}]) is None
    assert diagnose_pvc(pvc, []).reason == "pvc-pending"
    assert diagnose_pvc({**pvc, "status": {"phase": "Lost"}}, []).reason == "pvc-lost"


def test_a_job_that_cannot_create_its_pod(manifests: Path, tmp_path: Path) -> None:
    quota = 'Error creating: pods "m-download-x" is forbidden: exceeded quota: compute, requested: memory=2Gi'
    with fake_apiserver(NoPod("FailedCreate", quota)) as srv:
        code, _, err = apply(srv, tmp_path, manifests, "--timeout", "1")
        assert code == 1 and "pending: Job m-download cannot create its pod" in err and "ResourceQuota" in err
        code, out, _ = run("k8s", "status", REPO, "--kubeconfig", _kc(srv, tmp_path), "--json")
        assert code == 1 and json.loads(out)["jobs"][0]["reason"] == "pod-create"
    psa = ('Error creating: pods "m-download-x" is forbidden: violates PodSecurity "restricted:latest": '
           'seccompProfile')
    with fake_apiserver(NoPod("FailedCreate", psa)) as srv:
        code, _, err = apply(srv, tmp_path, manifests, "--timeout", "30")
    assert code == 1 and "error: Job m-download failed: Job m-download cannot create its pod" in err
    assert "Pod Security" in err


# -- pods that keep terminating ----------------------------------------------------------------
def test_terminating_pod_rule() -> None:
    pod = {"metadata": {"name": "p", "deletionTimestamp": "2026-01-01T00:00:00Z", "deletionGracePeriodSeconds": 30},
           "spec": {"nodeName": "gpu-7"}, "status": {"phase": "Running"}}
    soon = datetime(2026, 1, 1, 0, 0, 20, tzinfo=timezone.utc)
    later = datetime(2026, 1, 1, 0, 10, 0, tzinfo=timezone.utc)
    assert diagnose_pending(pod, [], now=soon) is None
    found = diagnose_pending(pod, [], now=later)
    assert found is not None and found.reason == "terminating" and "gpu-7" in found.hint and "--force" in found.hint


def test_a_job_whose_pods_keep_terminating_is_not_waited_on_blindly(tmp_path: Path) -> None:
    out = tmp_path / "m"
    assert run("--offline", "k8s", "render", REPO, "--revision", COMMIT, "--size", "20Gi", "-o", str(out))[0] == 0
    failing = FailingPod({"ready": False, "state": {"terminated": {"exitCode": 5, "reason": "Error"}}},
                         log="error: cannot connect\n", job_reason="BackoffLimitExceeded")
    with fake_apiserver(failing) as srv:
        assert apply(srv, tmp_path, out)[0] == 5
        srv.stuck_deletion = True
        code, _, err = apply(srv, tmp_path, out)
    assert code == 1 and "cannot be replaced" in err and "keeps terminating" in err and "--force" in err


# -- the API server says no: 409 conflicts, 422 validation -------------------------------------
def test_a_field_someone_else_changed_is_a_conflict_not_overwritten(manifests: Path, tmp_path: Path) -> None:
    with fake_apiserver() as srv:
        assert apply(srv, tmp_path, manifests, "--no-wait")[0] == 0
        srv.edit("deployments", "default", "model-cache-serve", "kubectl-edit", {"spec": {"replicas": 0}})
        code, _, err = apply(srv, tmp_path, manifests, "--no-wait")
        assert code == 1 and "HTTP 409" in err and ".spec.replicas" in err and "kubectl-edit" in err
        assert "--force-conflicts" in err and "Traceback" not in err
        assert srv.get("deployments", "default", "model-cache-serve")["spec"]["replicas"] == 0
        code, _, err = apply(srv, tmp_path, manifests, "--no-wait", "--force-conflicts")
        assert code == 0, err
        assert srv.get("deployments", "default", "model-cache-serve")["spec"]["replicas"] == 1
        # merge semantics: a field only the other manager set survives our apply
        srv.edit("deployments", "default", "model-cache-serve", "kubectl-edit",
                 {"metadata": {"labels": {"team": "infra"}}})
        assert apply(srv, tmp_path, manifests, "--no-wait")[0] == 0
        assert srv.get("deployments", "default", "model-cache-serve")["metadata"]["labels"]["team"] == "infra"


def test_a_422_names_the_field(manifests: Path, tmp_path: Path) -> None:
    field = "spec.template.spec.securityContext.runAsUser"
    with fake_apiserver() as srv:
        srv.invalid["deployments"] = (field, "Invalid value: 1000: must be in the ranges: [1000680000, 1000689999]")
        code, _, err = apply(srv, tmp_path, manifests, "--no-wait")
    assert code == 1 and "HTTP 422" in err and field in err and "1000680000" in err
    assert "k8s validate" in err and "Traceback" not in err


def test_the_ha_mirror_recipe_applies(tmp_path: Path) -> None:
    recipe = Path(__file__).resolve().parents[2] / "deploy" / "recipes" / "ha-mirror"
    with fake_apiserver() as srv:
        code, _, err = apply(srv, tmp_path, recipe, "--no-wait")
        assert code == 0, err
        assert srv.get("poddisruptionbudgets", "default", "mirror-cache-mirror")["spec"]["minAvailable"] == 1
        assert srv.get("deployments", "default", "mirror-cache-mirror")["spec"]["replicas"] == 2
        assert "PodDisruptionBudget/mirror-cache-mirror: applied" in err


def test_no_right_to_read_secrets_or_events_is_not_a_failure(manifests: Path, tmp_path: Path) -> None:
    """A deployer's RBAC often excludes Secrets (and sometimes Events): apply still works."""
    with fake_apiserver() as srv:
        srv.forbidden = {"secrets", "events"}
        code, _, err = apply(srv, tmp_path, manifests)
        assert code == 0, err
        assert "Job/m-download: complete" in err and "Secret/hf-token-secret: not found" not in err
