"""``k8s render``: every object validates, and every command line in it is one our CLI accepts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from helpers.k8s import COMMIT, by_kind, load_all, parse_cli, run

from modelcache.k8s._pod import TOKEN_PATH
from modelcache.k8s.validate import SUPPORTED, validate_objects

REPO = "Qwen/Qwen3-32B"
BASE = (REPO, "--revision", COMMIT, "--size", "100Gi")
CASES: dict[str, tuple[str, ...]] = {
    "default": (),
    "rwo-serve": ("--access-mode", "ReadWriteOnce"),
    "rwx-serve-forced": ("--serve", "--namespace", "llm"),
    "tenants-pvc": ("--tenant", "team-a", "--tenant", "team-b", "--gc-schedule", "0 4 * * 0"),
    "mirror-and-network": ("--mirror", "--job-endpoint", "https://hf.corp.example", "--ca-bundle", "configmap/corp.ca",
                           "--proxy", "http://proxy.corp:3128", "--no-proxy", ".corp.example", "--secret", "hf.token",
                           "--storage-class", "fast.nfs", "--image-pull-secret", "reg.cred", "--node-selector",
                           "pool=infra", "--toleration", "dedicated=infra:NoSchedule", "--env", "LOG_LEVEL=debug",
                           "--compile-cache", "20Gi", "--gc-schedule", "@daily"),
    "everything": ("--tenant", "a", "--tenant", "b", "--isolation", "subpath", "--access-mode", "ReadWriteOnce",
                   "--compile-cache", "50Gi", "--gc-schedule", "30 3 * * *", "--gc-max-age", "30d",
                   "--gc-keep-last", "2", "--storage-class", "fast-nfs", "--namespace", "llm", "--profile", "tokenizer",
                   "--job-endpoint", "http://hf-mirror.infra.svc:8080", "--mount-path", "/models",
                   "--name", "qwen", "--deadline", "90m", "--memory", "4Gi"),
}


def _docs(render_dir: Any, *extra: str) -> list[dict[str, Any]]:
    # --offline and an unreachable endpoint: a commit and a size render without any network
    code, files, err = render_dir(*BASE, *extra, pre=("--offline", "--endpoint", "http://127.0.0.1:9"))
    assert code == 0, err
    return [d for text in files.values() for d in load_all(text)]


def _env(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container.get("env", [])}


@pytest.mark.parametrize("version", SUPPORTED)
@pytest.mark.parametrize("case", CASES)
def test_every_object_validates_on_every_supported_version(render_dir: Any, case: str, version: str) -> None:
    docs = _docs(render_dir, *CASES[case])
    problems = validate_objects([(d["kind"], d) for d in docs], version)
    assert problems == []
    assert {"PersistentVolumeClaim", "Job", "PodTemplate"} <= {d["kind"] for d in docs}


@pytest.mark.parametrize("case", CASES)
def test_k8s_validate_defaults_to_the_oldest_supported(tmp_path: Path, case: str) -> None:
    out = tmp_path / "cli"
    assert run("--offline", "k8s", "render", *BASE, *CASES[case], "-o", str(out))[0] == 0
    n = sum(len(load_all(p.read_text())) for p in out.glob("*.yaml"))
    code, summary, _ = run("k8s", "validate", str(out))
    assert code == 0 and f"{n}/{n} objects valid against Kubernetes {SUPPORTED[0]} " in summary and "strict" in summary
    code, summary, _ = run("k8s", "validate", str(out), "--kubernetes-version", "all")
    assert code == 0 and ",".join(SUPPORTED) in summary


@pytest.mark.parametrize("case", CASES)
def test_job_runs_a_download_our_cli_accepts(render_dir: Any, case: str) -> None:
    docs = _docs(render_dir, *CASES[case])
    jobs = by_kind(docs, "Job")
    assert len(jobs) == max(1, CASES[case].count("--tenant"))
    for job in jobs:
        spec = job["spec"]
        assert spec["backoffLimit"] >= 1 and spec["activeDeadlineSeconds"] > 0 and spec["ttlSecondsAfterFinished"] > 0
        pod = spec["template"]["spec"]
        assert pod["restartPolicy"] == "Never"
        sec = pod["securityContext"]
        assert sec["runAsNonRoot"] is True and sec["runAsUser"] != 0 and sec["fsGroup"] == sec["runAsGroup"]
        (container,) = pod["containers"]
        assert container["securityContext"]["allowPrivilegeEscalation"] is False
        assert container["resources"]["requests"]["memory"] == container["resources"]["limits"]["memory"]
        globals_, name, params = parse_cli(container["command"])
        assert name == "download"
        assert params["repo_id"] == REPO and params["revision"] == COMMIT
        assert params["profile"] == ("tokenizer" if "tokenizer" in CASES[case] else "full")
        assert str(globals_["token_file"]) == TOKEN_PATH
        if "--job-endpoint" in CASES[case]:
            assert globals_["endpoint"] == CASES[case][CASES[case].index("--job-endpoint") + 1]
        # the token comes from the Secret, as a file, optional (public models need none)
        token_vol = next(v for v in pod["volumes"] if v["name"] == "hf-token")
        assert token_vol["secret"]["secretName"] in ("hf-token-secret", "hf.token") and token_vol["secret"]["optional"] is True
        mount = next(m for m in container["volumeMounts"] if m["name"] == token_vol["name"])
        assert TOKEN_PATH.startswith(mount["mountPath"] + "/") and mount["readOnly"] is True
        # the cache is the PVC, HF_HOME inside it, written by our non-root user
        cache_vol = next(v for v in pod["volumes"] if "persistentVolumeClaim" in v)
        cache_mount = next(m for m in container["volumeMounts"] if m["name"] == cache_vol["name"])
        assert "subPath" not in cache_mount and not cache_mount.get("readOnly")
        assert _env(container)["HF_HOME"].startswith(cache_mount["mountPath"])
        claims = {d["metadata"]["name"] for d in by_kind(docs, "PersistentVolumeClaim")}
        assert cache_vol["persistentVolumeClaim"]["claimName"] in claims
        assert job["metadata"]["annotations"]["modelcache.io/commit"] == COMMIT


@pytest.mark.parametrize("case", CASES)
def test_engine_waits_with_a_check_our_cli_accepts(render_dir: Any, case: str) -> None:
    docs = _docs(render_dir, *CASES[case])
    serves = "ReadWriteOnce" in CASES[case] or "--serve" in CASES[case]
    services = {d["metadata"]["name"]: d for d in by_kind(docs, "Service")}
    for tpl in by_kind(docs, "PodTemplate"):
        spec = tpl["template"]["spec"]
        inits = spec["initContainers"]
        wait = inits[-1]
        _, name, params = parse_cli(wait["command"])
        assert name == "check" and params["repo_id"] == REPO and params["revision"] == COMMIT
        assert params["wait_s"] and params["wait_s"] > 0
        assert _env(wait)["HF_HUB_OFFLINE"] == "1"
        assert all(m.get("readOnly") for m in wait["volumeMounts"])
        (engine,) = spec["containers"]
        env = _env(engine)
        assert env["HF_HUB_OFFLINE"] == "1" and env["MODEL_REVISION"] == COMMIT
        # the model cache read-only (HF_HUB_CACHE), HF_HOME writable and elsewhere (transformers' modules)
        model_mount = next(m for m in engine["volumeMounts"] if m["name"] == "model-cache")
        assert model_mount["readOnly"] is True and env["HF_HUB_CACHE"] == model_mount["mountPath"] + "/hub"
        home = next(m for m in engine["volumeMounts"] if m["mountPath"] == env["HF_HOME"])
        assert not home.get("readOnly") and next(v for v in spec["volumes"] if v["name"] == home["name"])["emptyDir"]
        assert not env["HF_HOME"].startswith(model_mount["mountPath"])
        assert spec["automountServiceAccountToken"] is False
        if serves:
            fetch = inits[0]
            globals_, name, params = parse_cli(fetch["command"])
            # gated models work in serve mode: the copy step sends the token from the Secret
            assert name == "download" and params["revision"] == COMMIT and str(globals_["token_file"]) == TOKEN_PATH
            assert globals_["allow_insecure_token"] is True
            assert any(TOKEN_PATH.startswith(m["mountPath"] + "/") for m in fetch["volumeMounts"])
            assert _env(fetch)["HF_HUB_CACHE"] == env["HF_HUB_CACHE"] == _env(wait)["HF_HUB_CACHE"]
            # the pod-local copy is an emptyDir: ask the scheduler for the room
            size = next(v for v in spec["volumes"] if v["name"] == "model-cache")["emptyDir"]["sizeLimit"]
            assert fetch["resources"]["requests"]["ephemeral-storage"] == engine["resources"]["requests"]["ephemeral-storage"]
            assert int(size.removesuffix("Gi")) <= int(fetch["resources"]["requests"]["ephemeral-storage"].removesuffix("Gi"))
            host = globals_["endpoint"].removeprefix("http://").split(".")[0]
            assert host in services and services[host]["spec"]["ports"][0]["port"] == 8080
            assert next(v for v in spec["volumes"] if v["name"] == "model-cache").get("emptyDir")
        else:
            assert len(inits) == 1
            vol = next(v for v in spec["volumes"] if v["name"] == "model-cache")
            assert vol["persistentVolumeClaim"]["readOnly"] is True
        if "--compile-cache" in CASES[case]:
            cc = next(m for m in engine["volumeMounts"] if m["name"] == "compile-cache")
            assert env["VLLM_CACHE_ROOT"] == cc["mountPath"] and not cc.get("readOnly")


def test_serve_and_gc_run_commands_our_cli_accepts(render_dir: Any) -> None:
    docs = _docs(render_dir, *CASES["everything"])
    for dep in by_kind(docs, "Deployment"):
        (c,) = dep["spec"]["template"]["spec"]["containers"]
        _, name, params = parse_cli(c["command"])
        assert name == "serve" and params["host"] == "0.0.0.0" and params["port"] == 8080
        assert params["auth_upstream"] == "http://hf-mirror.infra.svc:8080"  # the Job's endpoint checks tokens
        assert dep["spec"]["strategy"]["type"] == "Recreate"
        assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert dep["spec"]["template"]["spec"]["automountServiceAccountToken"] is False
    crons = by_kind(docs, "CronJob")
    assert len(crons) == 2
    for cron in crons:
        assert cron["spec"]["schedule"] == "30 3 * * *" and cron["spec"]["concurrencyPolicy"] == "Forbid"
        (c,) = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
        _, name, params = parse_cli(c["command"])
        assert name == "gc" and params["max_age"] == "30d" and params["keep_last"] == 2


def test_tenants_one_pvc_each(render_dir: Any) -> None:
    docs = _docs(render_dir, *CASES["tenants-pvc"])
    pvcs = {d["metadata"]["name"]: d for d in by_kind(docs, "PersistentVolumeClaim")}
    assert set(pvcs) == {"model-cache-team-a", "model-cache-team-b"}
    for job in by_kind(docs, "Job"):
        tenant = job["metadata"]["labels"]["modelcache.io/tenant"]
        vol = next(v for v in job["spec"]["template"]["spec"]["volumes"] if "persistentVolumeClaim" in v)
        assert vol["persistentVolumeClaim"]["claimName"] == f"model-cache-{tenant}"
        assert job["metadata"]["name"] == f"qwen3-32b-{tenant}-download"


def test_tenants_one_volume_a_subpath_each(render_dir: Any) -> None:
    docs = _docs(render_dir, *CASES["everything"])
    (pvc,) = [d for d in by_kind(docs, "PersistentVolumeClaim") if d["metadata"]["name"] == "model-cache"]
    assert pvc["spec"]["resources"]["requests"]["storage"] == "200Gi"  # two tenants' copies
    assert pvc["spec"]["storageClassName"] == "fast-nfs" and pvc["metadata"]["namespace"] == "llm"
    for job in by_kind(docs, "Job"):
        tenant = job["metadata"]["labels"]["modelcache.io/tenant"]
        (c,) = job["spec"]["template"]["spec"]["containers"]
        assert _env(c)["HF_HOME"] == f"/models/tenants/{tenant}"
        # no walk over every tenant's files at each start (see _pod.pod_security for why it is safe)
        assert job["spec"]["template"]["spec"]["securityContext"]["fsGroupChangePolicy"] == "OnRootMismatch"
    for tpl in by_kind(docs, "PodTemplate"):
        tenant = tpl["metadata"]["labels"]["modelcache.io/tenant"]
        wait = tpl["template"]["spec"]["initContainers"][-1]
        # serve mode: the engine's own copy; the serve Deployment reads the tenant's folder
        assert _env(wait)["HF_HUB_CACHE"] == "/models/hub"
    for dep in by_kind(docs, "Deployment"):
        tenant = dep["metadata"]["labels"]["modelcache.io/tenant"]
        (c,) = dep["spec"]["template"]["spec"]["containers"]
        assert _env(c)["HF_HOME"] == f"/models/tenants/{tenant}"


def test_subpath_engines_see_only_their_folder(render_dir: Any) -> None:
    docs = _docs(render_dir, "--tenant", "a", "--tenant", "b", "--isolation", "subpath")
    for tpl in by_kind(docs, "PodTemplate"):
        tenant = tpl["metadata"]["labels"]["modelcache.io/tenant"]
        (engine,) = tpl["template"]["spec"]["containers"]
        m = next(m for m in engine["volumeMounts"] if m["name"] == "model-cache")
        assert m["subPath"] == f"tenants/{tenant}" and m["readOnly"] is True
        assert _env(engine)["HF_HUB_CACHE"] == "/model-store/hub"
        # our check sees the whole volume read-only, so the kubelet never makes the tenant's folder as root
        (wait,) = tpl["template"]["spec"]["initContainers"]
        m = next(m for m in wait["volumeMounts"] if m["name"] == "model-cache")
        assert "subPath" not in m and m["readOnly"] is True
        assert _env(wait)["HF_HUB_CACHE"] == f"/model-store/tenants/{tenant}/hub"


def test_compile_cache_shared_on_rwx(render_dir: Any) -> None:
    docs = _docs(render_dir, "--compile-cache", "50Gi", "--compile-cache-path", "/home/dynamo/.cache/vllm")
    pvcs = {d["metadata"]["name"]: d for d in by_kind(docs, "PersistentVolumeClaim")}
    assert pvcs["compilation-cache"]["spec"]["resources"]["requests"]["storage"] == "50Gi"
    assert pvcs["compilation-cache"]["spec"]["accessModes"] == ["ReadWriteMany"]
    (tpl,) = by_kind(docs, "PodTemplate")
    (engine,) = tpl["template"]["spec"]["containers"]
    assert _env(engine)["VLLM_CACHE_ROOT"] == "/home/dynamo/.cache/vllm"


def test_compile_cache_per_replica_on_rwo(render_dir: Any) -> None:
    """A ReadWriteOnce volume mounted read-write by every replica would Multi-Attach-fail on a second node."""
    docs = _docs(render_dir, "--access-mode", "ReadWriteOnce", "--compile-cache", "50Gi")
    assert {d["metadata"]["name"] for d in by_kind(docs, "PersistentVolumeClaim")} == {"model-cache"}
    (tpl,) = by_kind(docs, "PodTemplate")
    spec = tpl["template"]["spec"]
    assert next(v for v in spec["volumes"] if v["name"] == "compile-cache")["emptyDir"]["sizeLimit"] == "50Gi"
    (engine,) = spec["containers"]
    assert engine["resources"]["requests"]["ephemeral-storage"] == "150Gi"  # the model copy + the compile cache


def test_rwo_pods_are_required_on_the_serve_node(render_dir: Any) -> None:
    docs = _docs(render_dir, "--access-mode", "ReadWriteOnce", "--gc-schedule", "0 4 * * *")
    (dep,) = by_kind(docs, "Deployment")
    selector = dep["spec"]["selector"]["matchLabels"]
    pods = [by_kind(docs, "Job")[0]["spec"]["template"]["spec"],
            by_kind(docs, "CronJob")[0]["spec"]["jobTemplate"]["spec"]["template"]["spec"]]
    for pod in pods:
        (term,) = pod["affinity"]["podAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
        assert term["labelSelector"]["matchLabels"] == selector and term["topologyKey"] == "kubernetes.io/hostname"
    # ReadWriteMany with --serve: any node mounts the volume, nothing to require
    docs = _docs(render_dir, "--serve", "--gc-schedule", "0 4 * * *")
    assert "affinity" not in by_kind(docs, "Job")[0]["spec"]["template"]["spec"]


def test_output_to_stdout_is_one_stream(tmp_path: Path) -> None:
    code, out, err = run("--offline", "k8s", "render", *BASE)
    assert code == 0 and "rendered 3 objects" in err
    assert [d["kind"] for d in load_all(out)] == ["PersistentVolumeClaim", "Job", "PodTemplate"]


@pytest.mark.parametrize("args, what", [
    (("--namespace", "Bad_NS"), "invalid namespace"),
    (("--namespace", "ns\n"), "invalid namespace"),
    (("--pvc", "-x"), "invalid PVC name"),
    (("--size", "lots"), "invalid --size"),
    (("--size", "100Mi"), "smaller than 1Gi"),
    (("--tenant", "a", "--tenant", "a"), "named twice"),
    (("--tenant", "UPPER"), "invalid tenant"),
    (("--image", "bad image"), "invalid --image"),
    (("--mount-path", "relative/path"), "invalid --mount-path"),
    (("--mount-path", "/a/../b"), "invalid --mount-path"),
    (("--gc-schedule", "every day"), "invalid --gc-schedule"),
    (("--gc-schedule", "60 3 * * *"), "bad minute field"),
    (("--gc-schedule", "0 24 * * *"), "bad hour field"),
    (("--gc-schedule", "0 3 0 * *"), "bad day of month field"),
    (("--gc-schedule", "0 3 * 13 *"), "bad month field"),
    (("--gc-schedule", "0 3 * * 7"), "bad day of week field"),
    (("--gc-schedule", "0 3 * * MON-FOO"), "bad day of week field"),
    (("--gc-schedule", "*/0 * * * *"), "bad minute field"),
    (("--gc-schedule", "5-1 * * * *"), "bad minute field"),
    (("--gc-schedule", "@every"), "invalid --gc-schedule"),
    (("--secret", "Bad_Secret"), "invalid Secret name"),
    (("--secret", "a..b"), "invalid Secret name"),
    (("--storage-class", "-x.y"), "invalid StorageClass"),
    (("--toleration", "k=v:Sometimes"), "invalid --toleration"),
    (("--node-selector", "novalue"), "invalid --node-selector"),
    (("--env", "HF_HOME=/x"), "set by render itself"),
    (("--env", "1X=y"), "invalid --env"),
    (("--ca-bundle", "volume/x"), "invalid --ca-bundle"),
    (("--proxy", "socks://x"), "invalid --proxy"),
    (("--image-pull-secret", "UPPER"), "invalid imagePullSecret"),
    (("--mirror", "--access-mode", "ReadWriteOnce"), "needs ReadWriteMany"),
    (("--serve-auth-tokens-secret", "x", "--serve-auth-upstream", "https://h"), "exclude each other"),
    (("--mirror", "--mirror-replicas", "1"), "invalid --mirror-replicas"),
    (("--gc-max-age", "30d"), "need --gc-schedule"),
    (("--gc-schedule", "0 4 * * *", "--gc-max-age", "a month"), "invalid --gc-max-age"),
    (("--gc-schedule", "0 4 * * *", "--gc-max-size", "huge"), "invalid --gc-max-size"),
    (("--deadline", "soon"), "invalid --deadline"),
    (("--memory", "lots"), "invalid --memory"),
    (("--name", "x" * 41), "longer than 40"),
    (("--job-endpoint", "ftp://x"), "invalid --job-endpoint"),
    (("--run-as-user", "0"), "invalid --run-as-user"),
    (("--compile-cache", "50Gi", "--compile-cache-path", "/model-store"), "share a path"),
])
def test_bad_input_is_one_line_with_a_hint(args: tuple[str, ...], what: str) -> None:
    code, out, err = run("--offline", "k8s", "render", *BASE, *args)
    assert code == 2, err
    assert what in err and "hint:" in err and out == ""


@pytest.mark.parametrize("args", [("../x",), ("org/m", "--revision", "../../etc"), ("org/m\n",),
                                  ("org/m", "--revision", COMMIT + "\n")])
def test_bad_repo_or_revision(args: tuple[str, ...]) -> None:
    code, _, err = run("--offline", "k8s", "render", *args, "--size", "10Gi")
    assert code == 2 and "invalid" in err and "hint:" in err


@pytest.mark.parametrize("schedule", ["@daily", "@hourly", "@weekly", "@monthly", "@yearly", "@annually", "@midnight",
                                      "0 4 * * 0", "*/15 0-6,22-23 1-31/2 JAN-DEC mon-fri", "0 0 ? * SUN", "59 23 31 12 6"])
def test_good_schedules_are_accepted(render_dir: Any, schedule: str) -> None:
    (cron,) = by_kind(_docs(render_dir, "--gc-schedule", schedule), "CronJob")
    assert cron["spec"]["schedule"] == schedule


def test_names_with_dots_and_scheduling_flags(render_dir: Any) -> None:
    docs = _docs(render_dir, *CASES["mirror-and-network"])
    (job,) = by_kind(docs, "Job")
    pod = job["spec"]["template"]["spec"]
    assert next(v for v in pod["volumes"] if "secret" in v)["secret"]["secretName"] == "hf.token"
    assert {p["storageClassName"] for p in (d["spec"] for d in by_kind(docs, "PersistentVolumeClaim"))} == {"fast.nfs"}
    assert pod["imagePullSecrets"] == [{"name": "reg.cred"}] and pod["nodeSelector"] == {"pool": "infra"}
    assert pod["tolerations"] == [{"key": "dedicated", "operator": "Equal", "value": "infra", "effect": "NoSchedule"}]
    assert pod["automountServiceAccountToken"] is False
    env = _env(pod["containers"][0])
    assert env["LOG_LEVEL"] == "debug" and env["HTTPS_PROXY"] == env["HTTP_PROXY"] == "http://proxy.corp:3128"
    assert ".svc" in env["NO_PROXY"].split(",") and ".corp.example" in env["NO_PROXY"].split(",")
    ca = next(v for v in pod["volumes"] if v["name"] == "ca-bundle")["configMap"]
    mount = next(m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "ca-bundle")
    assert ca["name"] == "corp.ca" and env["REQUESTS_CA_BUNDLE"] == env["SSL_CERT_FILE"] == mount["mountPath"] + "/ca.crt"
    (tpl,) = by_kind(docs, "PodTemplate")
    assert tpl["template"]["spec"]["imagePullSecrets"] == [{"name": "reg.cred"}]
    assert "nodeSelector" not in tpl["template"]["spec"]  # the engine's placement is the user's


def test_job_endpoint_over_http_and_the_token(render_dir: Any) -> None:
    code, files, err = render_dir(*BASE, "--job-endpoint", "http://hf-mirror.infra.svc:8080", pre=("--offline",))
    assert code == 0 and "warning:" in err and "--allow-insecure-token" in err and "exit 4" in err
    (job,) = by_kind(load_all(files["download-job.yaml"]), "Job")
    globals_, _, _ = parse_cli(job["spec"]["template"]["spec"]["containers"][0]["command"])
    assert not globals_["allow_insecure_token"]
    code, files, err = render_dir(*BASE, "--job-endpoint", "http://hf-mirror.infra.svc:8080", "--allow-insecure-token",
                                  pre=("--offline",))
    assert code == 0 and "in clear" in err
    (job,) = by_kind(load_all(files["download-job.yaml"]), "Job")
    globals_, _, _ = parse_cli(job["spec"]["template"]["spec"]["containers"][0]["command"])
    assert globals_["allow_insecure_token"] is True and globals_["endpoint"] == "http://hf-mirror.infra.svc:8080"


def test_ha_mirror(render_dir: Any) -> None:
    docs = _docs(render_dir, "--mirror", "--mirror-replicas", "3", "--mirror-upstream", "https://hf.corp.example")
    (dep,) = [d for d in by_kind(docs, "Deployment") if d["metadata"]["name"] == "model-cache-mirror"]
    spec = dep["spec"]
    assert spec["replicas"] == 3
    pod = spec["template"]["spec"]
    (c,) = pod["containers"]
    globals_, name, params = parse_cli(c["command"])
    assert name == "serve" and params["upstream"] == "https://hf.corp.example" and params["workers"] >= 2
    assert params["auth_upstream"] == "https://hf.corp.example" and str(globals_["token_file"]) == TOKEN_PATH
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    vol = next(v for v in pod["volumes"] if "persistentVolumeClaim" in v)["persistentVolumeClaim"]
    (pvc,) = [d for d in by_kind(docs, "PersistentVolumeClaim") if d["metadata"]["name"] == vol["claimName"]]
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]
    selector = spec["selector"]["matchLabels"]
    (term,) = pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert term["podAffinityTerm"]["labelSelector"]["matchLabels"] == selector
    (zones,) = pod["topologySpreadConstraints"]
    assert zones["topologyKey"] == "topology.kubernetes.io/zone" and zones["labelSelector"]["matchLabels"] == selector
    annotations = spec["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true" and annotations["prometheus.io/path"] == "/metrics"
    assert annotations["prometheus.io/port"] == str(c["ports"][0]["containerPort"])
    (pdb,) = by_kind(docs, "PodDisruptionBudget")
    assert pdb["spec"]["selector"]["matchLabels"] == selector and pdb["spec"]["minAvailable"] == 1
    (svc,) = [d for d in by_kind(docs, "Service") if d["metadata"]["name"] == "model-cache-mirror"]
    assert svc["spec"]["selector"] == selector and svc["spec"]["ports"][0]["name"] == "http"


def test_air_gapped_serve_checks_tokens_from_a_secret(render_dir: Any, tmp_path: Path) -> None:
    docs = _docs(render_dir, "--access-mode", "ReadWriteOnce", "--serve-auth-tokens-secret", "serve.tokens")
    (dep,) = by_kind(docs, "Deployment")
    pod = dep["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    vol = next(v for v in pod["volumes"] if v.get("secret", {}).get("secretName") == "serve.tokens")
    mount = next(m for m in c["volumeMounts"] if m["name"] == vol["name"])
    in_pod = mount["mountPath"] + "/" + vol["secret"]["items"][0]["path"]
    assert in_pod in c["command"]
    here = tmp_path / "tokens"  # the mounted file, for our parser (it checks the file exists)
    here.write_text("hf_x\n")
    _, _, params = parse_cli([str(here) if a == in_pod else a for a in c["command"]])
    assert params["auth_upstream"] is None and params["auth_tokens"] == here
    assert validate_objects([(d["kind"], d) for d in docs], SUPPORTED[0]) == []
