"""``k8s apply`` and ``k8s status`` through the official Kubernetes client, against a fake API
server on loopback (no real cluster can run here): what gets applied, progress while the Job
runs, and the reason a failing pod gives."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
from helpers.k8s import COMMIT, run
from fake_apiserver import FailingPod, Scenario, fake_apiserver, write_kubeconfig

pytest.importorskip("kubernetes")

REPO = "org/m"
TOKEN = "hf_FilledOnPurpose0123456789"


@pytest.fixture
def manifests(tmp_path: Path) -> Path:
    out = tmp_path / "manifests"
    code, _, err = run("--offline", "k8s", "render", REPO, "--revision", COMMIT, "--size", "20Gi", "-o", str(out))
    assert code == 0, err
    return out


def apply(srv: Any, tmp_path: Path, *paths: Path, extra: tuple[str, ...] = ()) -> tuple[int, str, str]:
    kc = write_kubeconfig(tmp_path / "kubeconfig", srv.url)
    return run("k8s", "apply", *map(str, paths), "--kubeconfig", str(kc), "--interval", "0.01", *extra)


def status(srv: Any, tmp_path: Path, *extra: str) -> tuple[int, str, str]:
    kc = write_kubeconfig(tmp_path / "kubeconfig", srv.url)
    return run("k8s", "status", REPO, "--kubeconfig", str(kc), *extra)


def test_apply_waits_with_progress_then_status_says_complete(manifests: Path, tmp_path: Path) -> None:
    with fake_apiserver() as srv:
        code, _, err = apply(srv, tmp_path, manifests)
        assert code == 0, err
        assert "50.0% 500 B/1000 B" in err and "Job/m-download: complete" in err
        # no Secret is applied (an empty one would only get in the way); its absence is said
        assert not srv.seen("PATCH", "/secrets/") and "Secret/hf-token-secret: not found" in err
        applied = {r.path.rsplit("/", 2)[-2] for r in srv.seen("PATCH")}
        assert applied == {"persistentvolumeclaims", "jobs", "podtemplates"}
        assert all(r.content_type == "application/apply-patch+yaml" and r.query["fieldManager"] == ["modelcache"]
                   for r in srv.seen("PATCH"))
        job = srv.get("jobs", "default", "m-download")
        assert COMMIT in job["spec"]["template"]["spec"]["containers"][0]["command"]

        code, out, _ = status(srv, tmp_path)
        assert code == 0 and "m-download: complete" in out
        code, out, _ = status(srv, tmp_path, "--json")
        assert code == 0 and '"state": "complete"' in out

        # applying again: the PVC is left alone, the finished Job is not recreated
        before = len(srv.seen("PATCH"))
        code, _, err = apply(srv, tmp_path, manifests)
        assert code == 0, err
        assert "exists (20Gi), left as is" in err and "unchanged and complete" in err
        assert len(srv.seen("PATCH")) == before + 1  # only the PodTemplate
        assert not srv.seen("DELETE")


def test_a_filled_secret_is_applied(tmp_path: Path) -> None:
    token_file = tmp_path / "t"
    token_file.write_text(TOKEN)
    out = tmp_path / "filled"
    assert run("--offline", "k8s", "render", REPO, "--revision", COMMIT, "--size", "20Gi",
               "--token-file", str(token_file), "-o", str(out))[0] == 0
    with fake_apiserver() as srv:
        code, _, err = apply(srv, tmp_path, out / "secret.yaml", extra=("--no-wait",))
        assert code == 0, err
        assert srv.get("secrets", "default", "hf-token-secret")["stringData"] == {"HF_TOKEN": TOKEN}
        assert TOKEN not in err


def _running(**state: Any) -> dict[str, Any]:
    return {"ready": False, "image": "modelcache:0.1.0", **state}


FAILURES = {
    "image-pull": (FailingPod(_running(state={"waiting": {"reason": "ImagePullBackOff",
                                                          "message": 'Back-off pulling image "modelcache:0.1.0"'}}),
                              job_reason=None, phase="Pending"),
                   1, ["cannot pull image modelcache:0.1.0", "--image"]),
    "oom": (FailingPod(_running(state={"terminated": {"exitCode": 137, "reason": "OOMKilled"}}),
                       job_reason="BackoffLimitExceeded"),
            1, ["out of memory (limit 2Gi)", "--memory"]),
    "token": (FailingPod(_running(state={"terminated": {"exitCode": 4, "reason": "Error"}}),
                         log="error: access to revision main of org/m denied (HTTP 401)\n  hint: check the token\n"),
              4, ["rejected the token", "denied (HTTP 401)", "hf-token-secret"]),
    "gated": (FailingPod(_running(state={"terminated": {"exitCode": 4, "reason": "Error"}}),
                         log="error: org/m is gated: this token has not been granted access (HTTP 403)\n"),
              4, ["gated", "accept the model's conditions"]),
    "disk": (FailingPod(_running(state={"terminated": {"exitCode": 7, "reason": "Error"}}),
                        log="error: cannot write to /model-store/hub: No space left on device\n"),
             7, ["volume is full", "--size"]),
    "deadline": (FailingPod(_running(state={"running": {}}), job_reason="DeadlineExceeded", phase="Running"),
                 1, ["ran out of time", "--deadline"]),
}


@pytest.mark.parametrize("case", FAILURES)
def test_failure_reason_comes_from_the_pod(manifests: Path, tmp_path: Path, case: str) -> None:
    scenario, exit_code, words = FAILURES[case]
    if case == "deadline":  # the Job failed on its own clock; the pod itself says nothing
        scenario.job_reason = "DeadlineExceeded"
        scenario.container_status = {"ready": True, "state": {"running": {}}}
    with fake_apiserver(scenario) as srv:
        code, _, err = apply(srv, tmp_path, manifests)
        assert code == exit_code, err
        assert "error: Job m-download failed" in err and "hint:" in err
        for word in words:
            assert word in err, (word, err)
        if case != "image-pull":  # status tells the same story later
            code, out, _ = status(srv, tmp_path)
            assert code == exit_code and "failed" in out and words[0] in out


def test_a_failed_job_is_replaced_on_the_next_apply(manifests: Path, tmp_path: Path) -> None:
    failing = FailingPod(_running(state={"terminated": {"exitCode": 4, "reason": "Error"}}), log="error: HTTP 401\n")
    with fake_apiserver(failing) as srv:
        assert apply(srv, tmp_path, manifests)[0] == 4
        srv.scenario = Scenario()  # the token was fixed
        code, _, err = apply(srv, tmp_path, manifests)
        assert code == 0, err
        assert "failed, replacing it" in err and len(srv.seen("DELETE", "/jobs/m-download")) == 1


def test_status_without_a_job(tmp_path: Path) -> None:
    with fake_apiserver() as srv:
        code, _, err = status(srv, tmp_path)
    assert code == 1 and "no download Job for org/m" in err and "hint:" in err


def test_the_kubeconfig_token_is_sent_and_a_refusal_explained(manifests: Path, tmp_path: Path) -> None:
    with fake_apiserver() as srv:
        kc = write_kubeconfig(tmp_path / "kc", srv.url)
        kc.write_text(kc.read_text().replace("fake-cluster-bearer-for-tests", "wrong"))
        code, _, err = run("k8s", "apply", str(manifests), "--kubeconfig", str(kc))
    assert code == 1 and "refused" in err and "HTTP 401" in err and "RBAC" in err


def test_unreachable_api_server(manifests: Path, tmp_path: Path) -> None:
    kc = write_kubeconfig(tmp_path / "kc", "http://127.0.0.1:9")
    code, _, err = run("k8s", "apply", str(manifests), "--kubeconfig", str(kc))
    assert code == 5 and "cannot reach the Kubernetes API" in err


def test_only_rendered_kinds_are_applied(tmp_path: Path) -> None:
    other = tmp_path / "x.yaml"
    other.write_text("apiVersion: v1\nkind: StatefulSet\nmetadata:\n  name: x\n  namespace: default\n")
    with fake_apiserver() as srv:
        code, _, err = apply(srv, tmp_path, other)
    assert code == 2 and "not an object" in err and not srv.requests


def test_without_the_kubernetes_client(manifests: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "kubernetes", None)
    kc = write_kubeconfig(tmp_path / "kc", "http://127.0.0.1:9")
    code, _, err = run("k8s", "apply", str(manifests), "--kubeconfig", str(kc))
    assert code == 1 and "official Kubernetes client" in err and "pip install 'modelcache[k8s]'" in err
