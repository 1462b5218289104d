"""The node-local DaemonSet's sync, for real: a local hub (two repo ids), two "nodes" (two cache
roots), node labels through the fake API server; a dropped model loses its label before its files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from fake_apiserver import TOKEN, fake_apiserver
from helpers.cli import run_cli
from helpers.k8s import by_kind, load_all
from helpers.live_server import import_demo, live_server

from modelcache.sync.nodes import label_key, label_value

A, B = "org/alpha", "org/beta"
CLI = [sys.executable, "-c", "from modelcache.cli.main import main; main()"]


@pytest.fixture
def hub(tmp_path: Path):  # type: ignore[no-untyped-def]
    source = tmp_path / "source"
    commits = {A: import_demo(source, A).commit, B: import_demo(source, B).commit}
    with live_server(source) as url:
        yield url, commits


@pytest.fixture
def api(tmp_path: Path):  # type: ignore[no-untyped-def]
    token = tmp_path / "sa-token"
    token.write_text(TOKEN + "\n")
    with fake_apiserver() as srv:
        srv.add_node("gpu-1", {"kubernetes.io/hostname": "gpu-1"})
        srv.add_node("gpu-2", {"kubernetes.io/hostname": "gpu-2", "team": "ml"})
        yield srv, token


def _sync(cache: Path, url: str, spec: Path, srv: Any, token: Path, node: str,
          env: dict[str, str] | None = None) -> tuple[int, dict[str, Any], str]:
    code, out, err = run_cli("--cache-dir", str(cache), "--endpoint", url, "sync", "-f", str(spec), "--json",
                             "--label-node", node, "--kube-api", srv.url, "--kube-token-file", str(token),
                             env={"NODE_NAME": node, **(env or {})})
    return code, json.loads(out) if out.strip() else {}, err


def _labels(srv: Any, node: str) -> dict[str, str]:
    return {k: v for k, v in srv.get("nodes", "", node)["metadata"]["labels"].items() if k.startswith("modelcache.io/")}


def test_two_nodes_are_labelled_when_ready_and_a_dropped_model_loses_its_label_first(
        tmp_path: Path, hub: Any, api: Any) -> None:
    url, commits = hub
    srv, token = api
    spec = tmp_path / "modelcache.yaml"
    spec.write_text(f"models:\n  - repo: {A}\n    name: alpha\n  - repo: {B}\n")
    caches = {"gpu-1": tmp_path / "node1", "gpu-2": tmp_path / "node2"}
    want = {label_key(A): label_value(commits[A]), label_key(B): label_value(commits[B])}
    for node, cache in caches.items():
        code, res, err = _sync(cache, url, spec, srv, token, node)
        assert code == 0 and res["ok"], err
        assert _labels(srv, node) == want
        assert [o["action"] for o in res["outcomes"]].count("label") == 2  # each model once it was ready
    assert srv.get("nodes", "", "gpu-2")["metadata"]["labels"]["team"] == "ml"  # other labels untouched
    patched = {r.path for r in srv.seen("PATCH")}
    assert patched == {"/api/v1/nodes/gpu-1", "/api/v1/nodes/gpu-2"}

    # B is dropped, with a policy that removes whatever is not pinned: its label must go first
    snap = caches["gpu-1"] / f"models--org--beta/snapshots/{commits[B]}"
    seen: list[tuple[dict[str, Any], bool]] = []
    srv.on_node_patch = lambda node, body: seen.append((body["metadata"]["labels"], snap.exists()))
    spec.write_text(f"policy:\n  keep_last: 0\nmodels:\n  - repo: {A}\n    name: alpha\n")
    code, res, err = _sync(caches["gpu-1"], url, spec, srv, token, "gpu-1")
    assert code == 0 and res["ok"], err
    assert not snap.exists()  # unpinned, then collected
    assert seen and seen[0] == ({label_key(B): None}, True)  # the label went while the files were still there
    assert _labels(srv, "gpu-1") == {label_key(A): want[label_key(A)]}
    assert _labels(srv, "gpu-2") == want  # the other node is its own


def test_labels_follow_the_disk_not_the_past(tmp_path: Path, hub: Any, api: Any) -> None:
    """A node whose disk was wiped (or a label someone set by hand) loses labels it cannot back."""
    url, commits = hub
    srv, token = api
    stale = {label_key(A): label_value(commits[A]), label_key("org/gone"): "0123456789ab"}
    srv.objects[("nodes", "", "gpu-1")]["metadata"]["labels"].update(stale)
    spec = tmp_path / "modelcache.yaml"
    spec.write_text(f"models:\n  - repo: {A}\n")
    seen: list[dict[str, Any]] = []
    srv.on_node_patch = lambda node, body: seen.append(dict(body["metadata"]["labels"]))
    bad_url = "http://127.0.0.1:9"  # the mirror is down: A cannot be fetched
    code, res, _ = _sync(tmp_path / "wiped", bad_url, spec, srv, token, "gpu-1")
    assert code != 0
    assert seen == [{label_key(A): None, label_key("org/gone"): None}]
    assert _labels(srv, "gpu-1") == {}


def test_a_pod_cannot_label_another_node(tmp_path: Path, hub: Any, api: Any) -> None:
    url, _ = hub
    srv, token = api
    spec = tmp_path / "modelcache.yaml"
    spec.write_text(f"models:\n  - repo: {A}\n")
    code, res, err = _sync(tmp_path / "c", url, spec, srv, token, "gpu-2", env={"NODE_NAME": "gpu-1"})
    assert code == 2 and "not this pod's node" in res["message"] and "Traceback" not in err
    assert not srv.seen("PATCH") and not srv.seen("GET")


def test_labels_that_cannot_be_updated_stop_unpin_and_gc(tmp_path: Path, hub: Any, api: Any) -> None:
    url, commits = hub
    srv, token = api
    spec = tmp_path / "modelcache.yaml"
    cache = tmp_path / "n"
    spec.write_text(f"models:\n  - repo: {A}\n  - repo: {B}\n")
    assert _sync(cache, url, spec, srv, token, "gpu-1")[0] == 0
    token.write_text("wrong-token")  # the API now refuses us (401)
    spec.write_text(f"policy:\n  keep_last: 0\nmodels:\n  - repo: {A}\n")
    code, res, err = _sync(cache, url, spec, srv, token, "gpu-1")
    assert code == 1 and any("401" in o.get("message", "") for o in res["outcomes"])
    assert (cache / f"models--org--beta/snapshots/{commits[B]}").exists()  # still labelled: kept
    skipped = [o for o in res["outcomes"] if o["action"] in ("unpin", "gc")]
    assert skipped and all(not o["ok"] and "labels" in o["message"] for o in skipped)
    assert "wrong-token" not in err and TOKEN not in err


def _daemonset_argv(tmp_path: Path, docs: list[dict[str, Any]], node: str, hub_url: str, srv: Any,
                    token: Path) -> tuple[list[str], dict[str, str], Path]:
    """The DaemonSet's container as the kubelet on ``node`` runs it: volumes as folders, the mirror
    Service at the local hub, $(NODE_NAME) expanded; in-cluster API → the fake (--kube-api)."""
    ds = by_kind(docs, "DaemonSet")[0]
    pod = ds["spec"]["template"]["spec"]
    c = pod["containers"][0]
    spec_dir = tmp_path / "configmap"
    spec_dir.mkdir(exist_ok=True)
    cm = by_kind(docs, "ConfigMap")[0]
    for key, text in cm["data"].items():
        (spec_dir / key).write_text(text)
    host_path = next(v["hostPath"]["path"] for v in pod["volumes"] if "hostPath" in v)
    disk = tmp_path / node / host_path.strip("/")
    disk.mkdir(parents=True)
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    folders = {"model-cache": disk, "sync-spec": spec_dir, "hf-token": tmp_path / "hf-token", "tmp": tmp_path / "tmp"}
    (tmp_path / "hf-token").mkdir(exist_ok=True)
    (tmp_path / "tmp").mkdir(exist_ok=True)

    def fix(text: str) -> str:
        text = text.replace("$(NODE_NAME)", node).replace("http://models-mirror.default.svc:8080", hub_url)
        for mount, name in sorted(mounts.items(), key=lambda kv: -len(kv[0])):
            if text == mount or text.startswith(mount + "/"):
                return str(folders[name]) + text[len(mount):]
        return text

    argv = [fix(a) for a in c["command"]]
    argv[argv.index("--interval") + 1] = "1s"  # the test does not wait 10 minutes
    assert argv[0] == "modelcache"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "KUBERNETES_")) and not k.endswith("_PROXY")}
    for e in c["env"]:
        env[e["name"]] = node if e.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "spec.nodeName" \
            else fix(e["value"])
    return [*CLI, *argv[1:], "--kube-api", srv.url, "--kube-token-file", str(token)], env, disk / "hub"


def _poll(what: Any, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not what():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_the_rendered_daemonset_on_two_nodes(tmp_path: Path, hub: Any, api: Any) -> None:
    """The DaemonSet's own command, on two nodes at once, as real processes; then a model is dropped
    from the ConfigMap: each node's label for it goes while its files are still there."""
    url, commits = hub
    srv, token = api
    spec = tmp_path / "modelcache.yaml"
    spec.write_text(f"policy:\n  keep_last: 0\nmodels:\n  - repo: {A}\n    commit: {commits[A]}\n    name: alpha\n"
                    f"  - repo: {B}\n    commit: {commits[B]}\n")
    code, _, err = run_cli("--offline", "k8s", "render", "-f", str(spec), "--node-local", "/mnt/nvme/models",
                           "--mirror-url", "http://models-mirror.default.svc:8080", "-o", str(tmp_path / "out"))
    assert code == 0, err
    docs = [d for p in sorted((tmp_path / "out").glob("*.yaml")) for d in load_all(p.read_text())]
    want = {label_key(A): label_value(commits[A]), label_key(B): label_value(commits[B])}
    engine = by_kind(docs, "PodTemplate")[0]["template"]["spec"]["affinity"]["nodeAffinity"]
    term = engine["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"][0]["matchExpressions"][0]
    assert (term["key"], term["operator"], term["values"]) == (label_key(A), "In", [want[label_key(A)]])

    procs, hubs = [], {}
    try:
        for node in ("gpu-1", "gpu-2"):
            (tmp_path / "k").mkdir(exist_ok=True)
            argv, env, hubs[node] = _daemonset_argv(tmp_path / "k", docs, node, url, srv, token)
            procs.append(subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        _poll(lambda: _labels(srv, "gpu-1") == want and _labels(srv, "gpu-2") == want)

        snaps = {n: hubs[n] / f"models--org--beta/snapshots/{commits[B]}" for n in hubs}
        assert all(s.exists() for s in snaps.values())
        seen: list[tuple[str, dict[str, Any], bool]] = []
        srv.on_node_patch = lambda node, body: seen.append((node, dict(body["metadata"]["labels"]), snaps[node].exists()))
        # the ConfigMap changes (the kubelet refreshes the mounted file): B is no longer declared
        (tmp_path / "k" / "configmap" / "modelcache.yaml").write_text(
            f"policy:\n  keep_last: 0\nmodels:\n  - repo: {A}\n    commit: {commits[A]}\n    name: alpha\n")
        _poll(lambda: not any(s.exists() for s in snaps.values()))
    finally:
        for p in procs:
            p.kill()
            p.wait()
    for node in hubs:
        removals = [(labels, existed) for n, labels, existed in seen if n == node and label_key(B) in labels]
        assert removals and removals[0] == ({label_key(B): None}, True)  # label gone first, files still there
        assert _labels(srv, node) == {label_key(A): want[label_key(A)]}
        assert (hubs[node] / f"models--org--alpha/snapshots/{commits[A]}").exists()


def test_a_mirror_outage_keeps_the_labels_of_what_is_on_disk(tmp_path: Path, hub: Any, api: Any) -> None:
    """`revision: main` cannot be looked up while the mirror is down: the node keeps serving the
    pinned commit it has (no GC can take it), instead of a whole fleet dropping its labels."""
    url, commits = hub
    srv, token = api
    spec = tmp_path / "modelcache.yaml"
    spec.write_text(f"policy:\n  keep_last: 0\nmodels:\n  - repo: {A}\n  - repo: {B}\n")
    cache = tmp_path / "n"
    assert _sync(cache, url, spec, srv, token, "gpu-1")[0] == 0
    want = {label_key(A): label_value(commits[A]), label_key(B): label_value(commits[B])}
    assert _labels(srv, "gpu-1") == want
    code, res, _ = _sync(cache, "http://127.0.0.1:9", spec, srv, token, "gpu-1")
    assert code != 0 and _labels(srv, "gpu-1") == want
    assert (cache / f"models--org--alpha/snapshots/{commits[A]}").exists()
    assert not [o for o in res["outcomes"] if o["action"] == "label" and not o["ok"]]


def test_the_plan_says_what_happens_to_the_labels(tmp_path: Path, hub: Any, api: Any) -> None:
    url, commits = hub
    srv, token = api
    srv.objects[("nodes", "", "gpu-1")]["metadata"]["labels"][label_key("org/gone")] = "0123456789ab"
    spec = tmp_path / "modelcache.yaml"
    spec.write_text(f"models:\n  - repo: {A}\n")
    code, out, err = run_cli("--cache-dir", str(tmp_path / "c"), "--endpoint", url, "sync", "-f", str(spec), "--dry-run",
                             "--label-node", "gpu-1", "--kube-api", srv.url, "--kube-token-file", str(token))
    assert code == 0, err
    assert f"node gpu-1: remove label {label_key('org/gone')} before any step" in err
    assert f"node gpu-1: label {label_key(A)}={label_value(commits[A])} once ready" in err
    assert not srv.seen("PATCH")  # a dry run changes no label


def test_gc_keeps_what_a_live_engine_pod_uses(tmp_path: Path, hub: Any, api: Any) -> None:
    """B is dropped: its label goes at once (no new pod lands there), but its files stay while an
    engine pod still runs on them (``--k8s-namespace``), and go once the pod is gone."""
    url, commits = hub
    srv, token = api
    spec = tmp_path / "modelcache.yaml"
    cache = tmp_path / "n"
    spec.write_text(f"models:\n  - repo: {A}\n  - repo: {B}\n")
    assert _sync(cache, url, spec, srv, token, "gpu-1")[0] == 0
    srv.objects[("pods", "default", "engine-b")] = {
        "apiVersion": "v1", "kind": "Pod", "status": {"phase": "Running"},
        "metadata": {"name": "engine-b", "namespace": "default", "labels": {"modelcache.io/consumer": "true"},
                     "annotations": {"modelcache.io/repo-id": B, "modelcache.io/commit": commits[B]}}}
    spec.write_text(f"policy:\n  keep_last: 0\nmodels:\n  - repo: {A}\n")
    snap = cache / f"models--org--beta/snapshots/{commits[B]}"
    args = ("--k8s-namespace", "default")
    code, out, err = run_cli("--cache-dir", str(cache), "--endpoint", url, "sync", "-f", str(spec), "--json",
                             "--label-node", "gpu-1", "--kube-api", srv.url, "--kube-token-file", str(token), *args,
                             env={"NODE_NAME": "gpu-1"})
    assert code == 0, err
    assert snap.exists() and label_key(B) not in _labels(srv, "gpu-1")
    del srv.objects[("pods", "default", "engine-b")]
    code, out, err = run_cli("--cache-dir", str(cache), "--endpoint", url, "sync", "-f", str(spec), "--json",
                             "--label-node", "gpu-1", "--kube-api", srv.url, "--kube-token-file", str(token), *args,
                             env={"NODE_NAME": "gpu-1"})
    assert code == 0, err
    assert not snap.exists()
