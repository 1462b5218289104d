"""``k8s render -f modelcache.yaml`` (a shared volume) and ``--node-local PATH``: every object validates
on every supported version, every command is one our CLI accepts, sizes come from the upstream."""

from __future__ import annotations

import os
import shlex
from pathlib import Path
from typing import Any

import pytest
from helpers.k8s import COMMIT, by_kind, load_all, parse_cli, run
from helpers.live_server import import_demo, live_server

from modelcache.k8s._pod import TOKEN_PATH
from modelcache.k8s.modelset import SPEC_PATH
from modelcache.k8s.sizing import volume_size_for
from modelcache.k8s.validate import SUPPORTED, validate_objects
from modelcache.sync import parse_spec
from modelcache.sync.nodes import label_key

C2 = "0123456789abcdef0123456789abcdef01234567"
SET = f"""# the platform's set
policy:
  max_size: 500GiB
models:
  - repo: Qwen/Qwen3-32B
    commit: {COMMIT}
    name: qwen3-32b
    engine: vllm
  - repo: meta-llama/Llama-3.1-8B-Instruct
    commit: {C2}
    name: llama-8b
    exclude: ["original/*"]
  - repo: org/tokenizer-only
    profile: tokenizer
    commit: {C2}
"""
NODE_LOCAL = ("--node-local", "/mnt/nvme/models", "--mirror-url", "http://mirror-cache-mirror.default.svc:8080")
CASES: dict[str, tuple[str, ...]] = {
    "shared": ("--size", "500Gi"),
    "shared-cronjob-and-flags": ("--size", "500Gi", "--schedule", "*/30 * * * *", "--namespace", "llm", "--name", "fleet",
                                 "--storage-class", "fast.nfs", "--job-endpoint", "https://hf.corp.example",
                                 "--ca-bundle", "configmap/corp.ca", "--proxy", "http://proxy.corp:3128",
                                 "--node-selector", "pool=infra", "--toleration", "dedicated=infra:NoSchedule"),
    "node-local": NODE_LOCAL,
    "node-local-flags": (*NODE_LOCAL, "--interval", "5m", "--namespace", "llm", "--node-selector",
                         "nvidia.com/gpu.present=true", "--toleration", "nvidia.com/gpu:NoSchedule",
                         "--image-pull-secret", "reg.cred", "--ca-bundle", "secret/corp-ca", "--env", "LOG_LEVEL=debug"),
}


def _docs(tmp_path: Path, *extra: str, text: str = SET) -> list[dict[str, Any]]:
    spec = tmp_path / "modelcache.yaml"
    spec.write_text(text)
    out = tmp_path / f"out{len(list(tmp_path.iterdir()))}"
    code, _, err = run("--offline", "--endpoint", "http://127.0.0.1:9", "k8s", "render", "-f", str(spec), *extra,
                       "-o", str(out))
    assert code == 0, err
    return [d for p in sorted(out.glob("*.yaml")) for d in load_all(p.read_text())]


def _pod(obj: dict[str, Any]) -> dict[str, Any]:
    if obj["kind"] == "CronJob":
        return obj["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return obj["spec"]["template"]["spec"] if obj["kind"] != "PodTemplate" else obj["template"]["spec"]


@pytest.mark.parametrize("version", SUPPORTED)
@pytest.mark.parametrize("case", CASES)
def test_every_object_validates_on_every_supported_version(tmp_path: Path, case: str, version: str) -> None:
    docs = _docs(tmp_path, *CASES[case])
    assert validate_objects([(f"{d['kind']}/{d['metadata']['name']}", d) for d in docs], version) == []


def test_shared_set_one_volume_one_sync_job_one_engine_per_served_model(tmp_path: Path) -> None:
    docs = _docs(tmp_path, *CASES["shared"])
    assert sorted(d["kind"] for d in docs) == ["ConfigMap", "Job", "PersistentVolumeClaim", "PodTemplate", "PodTemplate",
                                               "Role", "RoleBinding", "ServiceAccount"]
    (role,) = by_kind(docs, "Role")  # the Job may list pods (GC keeps what live engines use), nothing else
    assert role["rules"] == [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}]
    assert by_kind(docs, "PersistentVolumeClaim")[0]["spec"]["resources"]["requests"]["storage"] == "500Gi"
    cm = by_kind(docs, "ConfigMap")[0]
    assert cm["data"]["modelcache.yaml"] == SET  # verbatim: comments kept, and sync reads the same file
    assert len(parse_spec(cm["data"]["modelcache.yaml"]).models) == 3
    job = by_kind(docs, "Job")[0]
    pod = _pod(job)
    c = pod["containers"][0]
    glob, name, params = parse_cli(c["command"])
    assert name == "sync" and str(params["path"]) == SPEC_PATH and str(glob["token_file"]) == TOKEN_PATH
    assert params["namespaces"] == ("default",) and pod["serviceAccountName"] == by_kind(docs, "ServiceAccount")[0][
        "metadata"]["name"] == by_kind(docs, "RoleBinding")[0]["subjects"][0]["name"]
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    assert mounts["/etc/modelcache"] == "sync-spec"
    vols = {v["name"]: v for v in pod["volumes"]}
    assert vols["sync-spec"]["configMap"]["name"] == cm["metadata"]["name"]
    assert vols["model-cache"]["persistentVolumeClaim"]["claimName"] == "model-cache"
    assert job["spec"]["podFailurePolicy"]["rules"][0]["onExitCodes"]["containerName"] == "sync"
    engines = by_kind(docs, "PodTemplate")
    assert [e["metadata"]["name"] for e in engines] == ["qwen3-32b-engine", "llama-8b-engine"]
    env = {e["name"]: e["value"] for e in engines[1]["template"]["spec"]["containers"][0]["env"]}
    assert env["MODEL_NAME"] == "meta-llama/Llama-3.1-8B-Instruct" and env["MODEL_REVISION"] == C2


def test_a_changed_set_changes_the_job(tmp_path: Path) -> None:
    """``k8s apply`` recreates a Job whose spec changed: the file's hash is in the pod template."""
    a = by_kind(_docs(tmp_path, "--size", "500Gi"), "Job")[0]
    b = by_kind(_docs(tmp_path, "--size", "500Gi", text=SET.replace("500GiB", "400GiB")), "Job")[0]
    assert a["metadata"]["annotations"]["modelcache.io/spec-hash"] != b["metadata"]["annotations"]["modelcache.io/spec-hash"]


def test_schedule_renders_a_cronjob(tmp_path: Path) -> None:
    docs = _docs(tmp_path, *CASES["shared-cronjob-and-flags"])
    cron = by_kind(docs, "CronJob")[0]
    assert cron["spec"]["schedule"] == "*/30 * * * *" and cron["spec"]["concurrencyPolicy"] == "Forbid"
    assert not by_kind(docs, "Job") and cron["metadata"]["name"] == "fleet-sync"
    glob, name, _ = parse_cli(_pod(cron)["containers"][0]["command"])
    assert name == "sync" and glob["endpoint"] == "https://hf.corp.example"


def test_node_local_daemonset_rbac_and_affinity(tmp_path: Path) -> None:
    docs = _docs(tmp_path, *CASES["node-local"])
    assert sorted(d["kind"] for d in docs) == ["ClusterRole", "ClusterRoleBinding", "ConfigMap", "DaemonSet",
                                               "PodTemplate", "PodTemplate", "Role", "RoleBinding", "ServiceAccount"]
    assert not by_kind(docs, "PersistentVolumeClaim") and not by_kind(docs, "Job")
    role = by_kind(docs, "ClusterRole")[0]
    assert role["rules"] == [{"apiGroups": [""], "resources": ["nodes"], "verbs": ["get", "patch"]}]
    binding = by_kind(docs, "ClusterRoleBinding")[0]
    sa = by_kind(docs, "ServiceAccount")[0]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": sa["metadata"]["name"], "namespace": "default"}]
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    ds = by_kind(docs, "DaemonSet")[0]
    pod = _pod(ds)
    assert pod["serviceAccountName"] == sa["metadata"]["name"] and "automountServiceAccountToken" not in pod
    vols = {v["name"]: v for v in pod["volumes"]}
    assert vols["model-cache"]["hostPath"] == {"path": "/mnt/nvme/models", "type": "DirectoryOrCreate"}
    c = pod["containers"][0]
    glob, name, params = parse_cli(c["command"])
    assert name == "sync" and params["label_node"] == "$(NODE_NAME)" and params["interval"] == "10m"
    assert params["namespaces"] == ("default",)
    assert by_kind(docs, "RoleBinding")[0]["subjects"][0]["name"] == sa["metadata"]["name"]
    assert glob["endpoint"] == "http://mirror-cache-mirror.default.svc:8080" and str(params["path"]) == SPEC_PATH
    node_env = next(e for e in c["env"] if e["name"] == "NODE_NAME")
    assert node_env["valueFrom"] == {"fieldRef": {"fieldPath": "spec.nodeName"}}
    init = pod["initContainers"][0]  # the one root step: chown of the host folder, CAP_CHOWN only
    assert init["command"][0] == "chown" and init["securityContext"]["capabilities"] == {"drop": ["ALL"], "add": ["CHOWN"]}
    assert c["securityContext"]["capabilities"] == {"drop": ["ALL"]} and pod["securityContext"]["runAsNonRoot"] is True
    for engine, repo, commit in zip(by_kind(docs, "PodTemplate"), ["Qwen/Qwen3-32B", "meta-llama/Llama-3.1-8B-Instruct"],
                                    [COMMIT, C2]):
        spec = engine["template"]["spec"]
        term = spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
        assert term == [{"matchExpressions": [{"key": label_key(repo), "operator": "In", "values": [commit[:12]]}]}]
        assert {"name": "model-cache", "hostPath": {"path": "/mnt/nvme/models", "type": "Directory"}} in spec["volumes"]
        mounts = [m for c in spec["initContainers"] + spec["containers"] for m in c["volumeMounts"]
                  if m["name"] == "model-cache"]
        assert mounts and all(m["readOnly"] for m in mounts)


def test_sizes_come_from_the_upstream(tmp_path: Path) -> None:
    source = tmp_path / "source"
    commit = import_demo(source, "org/alpha").commit
    import_demo(source, "org/beta")
    with live_server(source) as url:
        spec = tmp_path / "modelcache.yaml"
        spec.write_text(f"endpoint: {url}\nmodels:\n  - repo: org/alpha\n    name: alpha\n  - repo: org/beta\n"
                        "    profile: tokenizer\n")
        out = tmp_path / "out"
        code, _, err = run("k8s", "render", "-f", str(spec), "-o", str(out))
    assert code == 0, err
    docs = [d for p in sorted(out.glob("*.yaml")) for d in load_all(p.read_text())]
    header = (out / "pvc.yaml").read_text()
    assert "upstream; asked 11Gi" in header  # two tiny models + the 10Gi minimum headroom
    assert by_kind(docs, "PersistentVolumeClaim")[0]["spec"]["resources"]["requests"]["storage"] == \
        f"{volume_size_for(0) // 1024**3 + 1}Gi"
    engine = by_kind(docs, "PodTemplate")[0]
    env = {e["name"]: e["value"] for e in engine["template"]["spec"]["containers"][0]["env"]}
    assert env["MODEL_REVISION"] == commit  # `main` pinned at render time


@pytest.mark.parametrize("args, text, what", [
    (("org/m",), SET, "not both"),
    (("--node-local", "/mnt/x"), SET, "needs --mirror-url"),
    ((*NODE_LOCAL, "--schedule", "@daily"), SET, "loops on --interval"),
    ((*NODE_LOCAL, "--interval", "1s"), SET, "invalid --interval"),
    ((*NODE_LOCAL, "--env", "NODE_NAME=other"), SET, "set by render itself"),
    (("--node-local", "relative", "--mirror-url", "http://m:8080"), SET, "invalid --node-local"),
    (("--node-local", "/var", "--mirror-url", "http://m:8080"), SET, "a system folder"),
    (("--node-local", "/etc/models", "--mirror-url", "http://m:8080"), SET, "a system folder"),
    (("--node-local", "/var/lib/kubelet/pods", "--mirror-url", "http://m:8080"), SET, "a system folder"),
    ((*NODE_LOCAL[:2], "--mirror-url", "ftp://m"), SET, "invalid --mirror-url"),
    (NODE_LOCAL, f"models:\n  - repo: org/a\n    commit: {C2}\n  - repo: org/a\n    revision: v2\n    commit: {C2}\n",
     "declared twice"),
    (("--size", "10Gi"), "models:\n  - repo: org/a\n    name: a\n", "--offline cannot pin"),
    (("--size", "10Gi", "--access-mode", "ReadWriteOnce"), SET, "ReadWriteOnce"),
    (("--size", "10Gi", "--schedule", "every day"), SET, "invalid --schedule"),
    (("--size", "10Gi", "--tenant", "a"), SET, "--tenant does not apply"),
    (("--size", "10Gi", "--revision", "v1"), SET, "--revision does not apply"),
    ((), SET, "--size auto looks the models up"),
    (("--size", "10Gi"), "models:\n  - repo: org/a\n    name: a\n    commit: " + C2 + "\n  - repo: org/b\n    name: a\n"
     "    namespace: other\n    commit: " + C2 + "\n", "same object name"),
    (("--size", "10Gi"), "models: 3\n", "modelcache.yaml:1"),
])
def test_bad_input_is_one_line_with_a_hint(tmp_path: Path, args: tuple[str, ...], text: str, what: str) -> None:
    spec = tmp_path / "modelcache.yaml"
    spec.write_text(text)
    first = ("org/m",) if args[:1] == ("org/m",) else ()
    code, out, err = run("--offline", "k8s", "render", *first, "-f", str(spec), *args[len(first):])
    assert code == 2, err
    assert what in err and "hint:" in err and out == "" and "Traceback" not in err


@pytest.mark.parametrize("flag", [("--schedule", "@daily"), ("--node-local", "/mnt/x"), ("--mirror-url", "http://m")])
def test_set_flags_need_a_file(flag: tuple[str, ...]) -> None:
    code, _, err = run("--offline", "k8s", "render", "org/m", "--revision", COMMIT, "--size", "10Gi", *flag)
    assert code == 2 and "needs -f" in err


def test_no_repo_and_no_file() -> None:
    code, _, err = run("--offline", "k8s", "render", "--size", "10Gi")
    assert code == 2 and "-f modelcache.yaml" in err


RECIPE = Path(__file__).resolve().parents[2] / "deploy" / "recipes" / "node-local"


def test_the_node_local_recipe_is_what_render_prints(tmp_path: Path) -> None:
    """``deploy/recipes/node-local/`` = the command in its README (regenerate with that command)."""
    readme = (RECIPE / "README.md").read_text()
    command = readme.split("```sh\n", 1)[1].split("```", 1)[0].replace("\\\n", " ")
    args = shlex.split(command)[1:]
    args[args.index("--output") + 1] = str(tmp_path / "out")
    args[args.index("-f") + 1] = str(RECIPE.parents[2] / args[args.index("-f") + 1])
    code, _, err = run(*args)
    assert code == 0, err
    fresh = {p.name: p.read_text() for p in sorted((tmp_path / "out").glob("*.yaml"))}
    kept = {p.name: p.read_text() for p in sorted(RECIPE.glob("*.yaml"))}
    assert fresh == kept
    docs = [d for text in kept.values() for d in load_all(text)]
    assert by_kind(docs, "ConfigMap")[0]["data"]["modelcache.yaml"] == (RECIPE / "modelcache.yaml.example").read_text()


def test_the_rendered_sync_job_runs(tmp_path: Path) -> None:
    """The Job's command as the kubelet runs it (volumes as folders, the endpoint at a local hub):
    the set lands in the volume, ready, pinned and registered; the engines' checks pass."""
    import subprocess
    import sys

    from modelcache import ModelCache, ModelManager, Settings

    source = tmp_path / "source"
    commit = import_demo(source, "org/alpha").commit
    import_demo(source, "org/beta")
    spec = tmp_path / "modelcache.yaml"
    spec.write_text(f"models:\n  - repo: org/alpha\n    commit: {commit}\n    name: alpha\n"
                    '    exclude: ["original/*"]\n  - repo: org/beta\n    profile: tokenizer\n')
    docs = _docs(tmp_path, "--size", "20Gi", "--job-endpoint", "http://hub.infra.svc:8080", text=spec.read_text())
    pod = _pod(by_kind(docs, "Job")[0])
    c = pod["containers"][0]
    folders = {"/model-store": tmp_path / "pvc", "/etc/modelcache": tmp_path / "cm",
               "/var/run/secrets/huggingface": tmp_path / "secret", "/tmp": tmp_path / "tmp"}
    for f in folders.values():
        f.mkdir(exist_ok=True)
    (tmp_path / "cm" / "modelcache.yaml").write_text(by_kind(docs, "ConfigMap")[0]["data"]["modelcache.yaml"])
    with live_server(source) as url:
        def fix(text: str) -> str:
            for mount, folder in folders.items():
                if text == mount or text.startswith(mount + "/"):
                    return str(folder) + text[len(mount):]
            return text.replace("http://hub.infra.svc:8080", url)

        env = {k: v for k, v in os.environ.items() if not k.startswith("HF_") and not k.endswith("_PROXY")}
        env.update({e["name"]: fix(e["value"]) for e in c["env"]})
        argv = [sys.executable, "-c", "from modelcache.cli.main import main; main()", *map(fix, c["command"][1:])]
        proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    mc = ModelCache(Settings(cache_dir=tmp_path / "pvc" / "hub", offline=True))
    assert mc.check("org/alpha", commit).ready and mc.is_pinned("org/alpha", commit)
    assert mc.check("org/beta", profile="tokenizer").ready
    assert ModelManager(mc).get("alpha").commit == commit
    assert not (tmp_path / "pvc" / "hub" / "models--org--alpha" / "snapshots" / commit / "original").exists()
    # the engine's wait-for-model check, as rendered, passes on what the Job put there
    (engine,) = by_kind(docs, "PodTemplate")
    init = engine["template"]["spec"]["initContainers"][0]
    assert init["command"][-2:] == ["--exclude", "original/*"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update({e["name"]: fix(e["value"]) for e in init["env"]})
    argv = [sys.executable, "-c", "from modelcache.cli.main import main; main()", *map(fix, init["command"][1:])]
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr


def test_k8s_apply_applies_a_shared_set_and_follows_its_job(tmp_path: Path) -> None:
    """ConfigMap, ServiceAccount, Role(Binding), PVC, Job, PodTemplates: all `k8s apply` kinds."""
    from fake_apiserver import fake_apiserver, write_kubeconfig

    spec = tmp_path / "modelcache.yaml"
    spec.write_text(SET)
    out = tmp_path / "set"
    code, _, err = run("--offline", "k8s", "render", "-f", str(spec), "--size", "500Gi", "-o", str(out))
    assert code == 0, err
    with fake_apiserver() as srv:
        kc = write_kubeconfig(tmp_path / "kubeconfig", srv.url)
        code, _, err = run("k8s", "apply", str(out), "--kubeconfig", str(kc), "--interval", "0.01")
        assert code == 0, err
        assert "Job/models-sync: complete" in err
        cm = srv.get("configmaps", "default", "models-spec")
        assert cm is not None and cm["data"]["modelcache.yaml"] == SET
        assert {r.path.rsplit("/", 2)[-2] for r in srv.seen("PATCH")} >= {
            "configmaps", "serviceaccounts", "roles", "rolebindings", "persistentvolumeclaims", "jobs", "podtemplates"}
        order = [r.path.rsplit("/", 2)[-2] for r in srv.seen("PATCH")]
        assert max(order.index(k) for k in ("configmaps", "serviceaccounts", "roles", "rolebindings")) < order.index("jobs")


def test_k8s_apply_sends_the_node_local_tier_to_kubectl(tmp_path: Path) -> None:
    from fake_apiserver import fake_apiserver, write_kubeconfig

    spec = tmp_path / "modelcache.yaml"
    spec.write_text(SET)
    out = tmp_path / "nl"
    assert run("--offline", "k8s", "render", "-f", str(spec), *NODE_LOCAL, "-o", str(out))[0] == 0
    with fake_apiserver() as srv:
        kc = write_kubeconfig(tmp_path / "kubeconfig", srv.url)
        code, _, err = run("k8s", "apply", str(out), "--kubeconfig", str(kc))
        assert code == 2 and "cluster-scoped" in err and "kubectl apply -f" in err and not srv.requests


def test_an_unreachable_upstream_says_how_to_render_without_it(tmp_path: Path) -> None:
    spec = tmp_path / "modelcache.yaml"
    spec.write_text("models:\n  - repo: org/a\n    name: a\n")
    code, out, err = run("--endpoint", "http://127.0.0.1:9", "k8s", "render", "-f", str(spec), "-o", str(tmp_path / "o"))
    assert code == 5 and "give --size SIZE and declare `commit:`" in err and out == "" and "Traceback" not in err
