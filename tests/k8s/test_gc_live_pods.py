"""The rendered engine + GC pair against the fake API server (issue #12, section 2): a revision a
live engine pod uses survives GC while the pod lives, without the pod writing to the volume,
and goes once the pod is gone and GC's policy says so."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest
from helpers.k8s import by_kind, load_all, run
from fake_apiserver import fake_apiserver, write_kubeconfig

from modelcache import ModelCache, Settings
from modelcache.cache.usage import record_use
from modelcache.k8s.pods import pod_uses

REPO = "org/demo"
NS = "llm"


def _render(tmp_path: Path, commit: str) -> list[dict[str, Any]]:
    out = tmp_path / "manifests"
    code, _, err = run("--offline", "--endpoint", "http://127.0.0.1:9", "k8s", "render", REPO, "--revision", commit,
                       "--size", "10Gi", "--namespace", NS, "--gc-schedule", "0 * * * *", "--gc-max-age", "30d",
                       "--output", str(out))
    assert code == 0, err
    return [d for p in sorted(out.glob("*.yaml")) for d in load_all(p.read_text())]


def _pod_from(template: dict[str, Any], name: str, phase: str) -> dict[str, Any]:
    """What the kubelet runs when a Deployment uses the engine template (metadata copied as the usage says)."""
    md = template["template"]["metadata"]
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": NS, "labels": dict(md["labels"]),
                         "annotations": dict(md["annotations"])},
            "spec": template["template"]["spec"], "status": {"phase": phase}}


def _gc_argv(docs: list[dict[str, Any]], cache: Path, kubeconfig: Path) -> list[str]:
    (cron,) = by_kind(docs, "CronJob")
    pod = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "model-cache-gc"
    (container,) = pod["containers"]
    argv = container["command"]
    assert argv[:2] == ["modelcache", "gc"] and argv[-2:] == ["--k8s-namespace", NS]
    return ["--cache-dir", str(cache), *argv[1:], "--kubeconfig", str(kubeconfig)]


def test_rendered_gc_keeps_what_live_engine_pods_use(tmp_path: Path, demo_model: Path) -> None:
    cache = tmp_path / "cache"
    mc = ModelCache(Settings(cache_dir=cache, offline=True))
    commit = mc.import_folder(demo_model, REPO).commit
    layout = mc.layout(REPO)
    record_use(layout, commit, time.time() - 90 * 86400)  # last recorded use long ago: over --gc-max-age
    os.utime(layout.folder, (time.time() - 86400, time.time() - 86400))  # not a repo a download just created
    docs = _render(tmp_path, commit)

    # GC may only read pods in its namespace
    (role,) = by_kind(docs, "Role")
    assert role["rules"] == [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}]
    (binding,) = by_kind(docs, "RoleBinding")
    assert binding["subjects"][0]["name"] == "model-cache-gc" and binding["roleRef"]["name"] == "model-cache-gc"
    (sa,) = by_kind(docs, "ServiceAccount")
    assert sa["metadata"]["name"] == "model-cache-gc"

    (template,) = by_kind(docs, "PodTemplate")
    for c in template["template"]["spec"]["initContainers"] + template["template"]["spec"]["containers"]:
        assert all(m.get("readOnly") for m in c["volumeMounts"] if m["name"] == "model-cache")

    with fake_apiserver() as srv:
        kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", srv.url)
        argv = _gc_argv(docs, cache, kubeconfig)
        srv.objects[("pods", NS, "vllm-0")] = _pod_from(template, "vllm-0", "Running")
        srv.objects[("pods", NS, "old-job")] = _pod_from(template, "old-job", "Succeeded")

        code, out, err = run(*argv)
        assert code == 0, err
        assert f"kept {REPO}@{commit[:12]}: in use by pod {NS}/vllm-0" in out
        assert mc.check(REPO, record=False).ready
        listed = srv.seen("GET", f"/api/v1/namespaces/{NS}/pods")
        assert listed and listed[-1].query["labelSelector"] == ["modelcache.io/consumer=true"]

        srv.objects[("pods", NS, "vllm-0")]["status"] = {"phase": "Failed"}  # the engine is gone
        code, out, err = run(*argv)
        assert code == 0, err
        assert f"removed {REPO}@{commit[:12]}" in out
        assert not mc.check(REPO, record=False).ready
        assert not layout.folder.exists()  # and the empty repo folder with it


def test_gc_removes_nothing_when_pods_cannot_be_listed(tmp_path: Path, demo_model: Path) -> None:
    cache = tmp_path / "cache"
    mc = ModelCache(Settings(cache_dir=cache, offline=True))
    commit = mc.import_folder(demo_model, REPO).commit
    record_use(mc.layout(REPO), commit, time.time() - 90 * 86400)
    with fake_apiserver() as srv:
        bad = tmp_path / "kubeconfig"
        write_kubeconfig(bad, srv.url)
        bad.write_text(bad.read_text().replace("fake-cluster-bearer-for-tests", "wrong-token"))
        code, out, err = run("--cache-dir", str(cache), "gc", "--max-age", "1d", "--k8s-namespace", NS,
                             "--kubeconfig", str(bad))
    assert code != 0 and "Kubernetes" in err and "hint:" in err
    assert mc.check(REPO, record=False).ready


def test_pod_uses_is_strict_about_annotations() -> None:
    good = {"metadata": {"name": "a", "namespace": NS,
                         "annotations": {"modelcache.io/repo-id": REPO, "modelcache.io/commit": "a" * 40}},
            "status": {"phase": "Pending"}}
    uses, notes = pod_uses([
        good,
        {**good, "status": {"phase": "Succeeded"}},
        {"metadata": {"name": "b", "namespace": NS, "annotations": {"modelcache.io/repo-id": "../etc",
                                                                    "modelcache.io/commit": "a" * 40}}},
        {"metadata": {"name": "c", "namespace": NS, "annotations": {"modelcache.io/repo-id": REPO,
                                                                    "modelcache.io/commit": "main"}}},
        {"metadata": {"name": "d", "namespace": NS}},
    ])
    assert [(u.pod, u.repo_id, u.commit) for u in uses] == [("a", REPO, "a" * 40)]
    assert len(notes) == 3


def test_registered_models_are_protected_like_pins(tmp_path: Path, demo_model: Path) -> None:
    from modelcache.models import ModelManager

    cache = tmp_path / "cache"
    mc = ModelCache(Settings(cache_dir=cache, offline=True))
    commit = mc.import_folder(demo_model, REPO).commit
    record_use(mc.layout(REPO), commit, time.time() - 90 * 86400)
    ModelManager(mc).add("demo", REPO)
    report = mc.gc(max_age=86400.0)
    assert not report.plan.remove
    assert [why for _, why in report.plan.kept] == ["registered as model demo (namespace default)"]
    code, out, _ = run("--cache-dir", str(cache), "gc", "--max-size", "0B")
    assert code == 0 and "registered as model demo" in out and mc.check(REPO, record=False).ready
    ModelManager(mc).remove("demo", force=True)
    assert mc.gc(max_age=86400.0).plan.remove


def test_in_cluster_listing_needs_no_client_library(tmp_path: Path, demo_model: Path) -> None:
    """The CronJob's pod asks with its ServiceAccount token over plain HTTPS (httpx): the image needs
    no Kubernetes client; a token the API refuses stops GC."""
    from fake_apiserver import TOKEN

    from modelcache.errors import InvalidInput
    from modelcache.k8s.cluster import ClusterError
    from modelcache.k8s.pods import InCluster, in_use, list_pod_uses

    assert InCluster.from_env({"KUBERNETES_SERVICE_HOST": "10.0.0.1", "KUBERNETES_SERVICE_PORT": "6443"}).api == \
        "https://10.0.0.1:6443"
    assert InCluster.from_env({}) is None
    cache = tmp_path / "cache"
    mc = ModelCache(Settings(cache_dir=cache, offline=True))
    commit = mc.import_folder(demo_model, REPO).commit
    record_use(mc.layout(REPO), commit, time.time() - 90 * 86400)
    docs = _render(tmp_path, commit)
    (template,) = by_kind(docs, "PodTemplate")
    token = tmp_path / "token"
    token.write_text(TOKEN + "\n")
    with fake_apiserver() as srv:
        srv.objects[("pods", NS, "vllm-0")] = _pod_from(template, "vllm-0", "Pending")  # init container waiting
        where = InCluster(srv.url, str(token), None)
        report = mc.gc(max_age=86400.0, in_use=lambda: in_use(list_pod_uses([NS], in_cluster=where)[0]))
        assert not report.plan.remove and report.plan.kept[0][1] == f"in use by pod {NS}/vllm-0"
        token.write_text("revoked")
        with pytest.raises(ClusterError) as err:
            mc.gc(max_age=86400.0, in_use=lambda: in_use(list_pod_uses([NS], in_cluster=where)[0]))
        assert "HTTP 401" in err.value.message and "Role" in err.value.hint
        with pytest.raises(InvalidInput):
            list_pod_uses(["../../secrets"], in_cluster=where)
    assert mc.check(REPO, record=False).ready
