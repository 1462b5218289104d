"""``k8s render``: every object validates, and every command line in it is one our CLI accepts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from conftest import COMMIT, by_kind, load_all, parse_cli, run

from modelcache.k8s._pod import TOKEN_PATH
from modelcache.k8s.validate import schema_version, validate_objects

REPO = "Qwen/Qwen3-32B"
BASE = (REPO, "--revision", COMMIT, "--size", "100Gi")
CASES: dict[str, tuple[str, ...]] = {
    "default": (),
    "rwo-serve": ("--access-mode", "ReadWriteOnce"),
    "rwx-serve-forced": ("--serve", "--namespace", "llm"),
    "tenants-pvc": ("--tenant", "team-a", "--tenant", "team-b", "--gc-schedule", "0 4 * * 0"),
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


@pytest.mark.parametrize("case", CASES)
def test_every_object_validates(render_dir: Any, tmp_path: Path, case: str) -> None:
    docs = _docs(render_dir, *CASES[case])
    problems = validate_objects([(d["kind"], d) for d in docs], schema_version())
    assert problems == []
    assert {"Secret", "PersistentVolumeClaim", "Job", "PodTemplate"} <= {d["kind"] for d in docs}
    out = tmp_path / "cli"
    assert run("--offline", "k8s", "render", *BASE, *CASES[case], "-o", str(out))[0] == 0
    code, summary, _ = run("k8s", "validate", str(out))
    assert code == 0 and f"{len(docs)}/{len(docs)} objects valid" in summary and "strict" in summary


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
            assert globals_["endpoint"] == "http://hf-mirror.infra.svc:8080"
        # the token comes from the Secret, as a file, optional (public models need none)
        token_vol = next(v for v in pod["volumes"] if "secret" in v)
        assert token_vol["secret"]["secretName"] == "hf-token-secret" and token_vol["secret"]["optional"] is True
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
        assert env["HF_HOME"] == _env(wait)["HF_HOME"]
        model_mount = next(m for m in engine["volumeMounts"] if m["name"] == "model-cache")
        assert model_mount["readOnly"] is True and model_mount["mountPath"] == env["HF_HOME"]
        if serves:
            fetch = inits[0]
            globals_, name, params = parse_cli(fetch["command"])
            assert name == "download" and params["revision"] == COMMIT and globals_["token_file"] is None
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
        assert dep["spec"]["strategy"]["type"] == "Recreate"
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
        assert job["spec"]["template"]["spec"]["securityContext"]["fsGroupChangePolicy"] == "Always"
    for tpl in by_kind(docs, "PodTemplate"):
        tenant = tpl["metadata"]["labels"]["modelcache.io/tenant"]
        wait = tpl["template"]["spec"]["initContainers"][-1]
        # serve mode: the engine's own copy; the serve Deployment reads the tenant's folder
        assert _env(wait)["HF_HOME"] == "/models"
    for dep in by_kind(docs, "Deployment"):
        tenant = dep["metadata"]["labels"]["modelcache.io/tenant"]
        (c,) = dep["spec"]["template"]["spec"]["containers"]
        assert _env(c)["HF_HOME"] == f"/models/tenants/{tenant}"


def test_subpath_engines_see_only_their_folder(render_dir: Any) -> None:
    docs = _docs(render_dir, "--tenant", "a", "--tenant", "b", "--isolation", "subpath")
    for tpl in by_kind(docs, "PodTemplate"):
        tenant = tpl["metadata"]["labels"]["modelcache.io/tenant"]
        for c in tpl["template"]["spec"]["initContainers"] + tpl["template"]["spec"]["containers"]:
            m = next(m for m in c["volumeMounts"] if m["name"] == "model-cache")
            assert m["subPath"] == f"tenants/{tenant}" and m["readOnly"] is True


def test_compile_cache_beside_the_model_cache(render_dir: Any) -> None:
    docs = _docs(render_dir, "--compile-cache", "50Gi", "--compile-cache-path", "/home/dynamo/.cache/vllm")
    pvcs = {d["metadata"]["name"]: d for d in by_kind(docs, "PersistentVolumeClaim")}
    assert pvcs["compilation-cache"]["spec"]["resources"]["requests"]["storage"] == "50Gi"
    (tpl,) = by_kind(docs, "PodTemplate")
    (engine,) = tpl["template"]["spec"]["containers"]
    assert _env(engine)["VLLM_CACHE_ROOT"] == "/home/dynamo/.cache/vllm"


def test_output_to_stdout_is_one_stream(tmp_path: Path) -> None:
    code, out, err = run("--offline", "k8s", "render", *BASE)
    assert code == 0 and "rendered 4 objects" in err
    assert [d["kind"] for d in load_all(out)] == ["Secret", "PersistentVolumeClaim", "Job", "PodTemplate"]


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
