"""The rendered pods' commands, run as the kubelet would (argv and env from the manifests, each
volume a folder on disk, Service names pointed at loopback) against a gated upstream: the Job
downloads with the token, ``serve`` starts on the volume, and an engine pod's copy step gets
the gated model from ``serve`` with the token (and is refused without it), then the check
passes. No cluster, no internet: a fake Hub on 127.0.0.1."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
from helpers.k8s import by_kind, load_all, run
from helpers.repos import model_repo
from helpers.fault_server import Repo, fault_server

from modelcache.k8s._pod import TOKEN_DIR

CLI = [sys.executable, "-c", "from modelcache.cli.main import main; main()"]
TOKEN = "hf_SandboxToken0123456789abcdef"
REPO = "org/gated"


def _repo() -> Repo:
    return model_repo(REPO, weights=200_000)


def _container(docs: list[dict[str, Any]], kind: str, name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    for d in by_kind(docs, kind):
        spec = d["spec"]["template"]["spec"] if kind in ("Job", "Deployment") else d["template"]["spec"]
        for c in spec.get("initContainers", []) + spec["containers"]:
            if c["name"] == name:
                return c, spec
    raise AssertionError(f"no container {name} in a {kind}")


def _argv_env(c: dict[str, Any], mounts: dict[str, Path], hosts: dict[str, str]) -> tuple[list[str], dict[str, str]]:
    """The container's command and env, with each mount path mapped to its folder and each
    in-cluster URL to loopback."""
    def fix(text: str) -> str:
        for mount, folder in sorted(mounts.items(), key=lambda kv: -len(kv[0])):
            if text == mount or text.startswith(mount + "/"):
                return str(folder) + text[len(mount):]
        for url, local in hosts.items():
            text = text.replace(url, local)
        return text

    assert c["command"][0] == "modelcache"
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_") and not k.endswith("_PROXY")}
    env.update({e["name"]: fix(e["value"]) for e in c.get("env", [])})
    return [*CLI, *map(fix, c["command"][1:])], env


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_gated_model_in_serve_mode_end_to_end(tmp_path: Path) -> None:
    repo = _repo()
    with fault_server(repo) as hub:
        hub.valid_tokens, hub.gated = {TOKEN}, True
        out = tmp_path / "manifests"
        code, _, err = run("--offline", "k8s", "render", REPO, "--revision", repo.commit, "--size", "10Gi",
                           "--access-mode", "ReadWriteOnce", "--job-endpoint", hub.url, "-o", str(out))
        assert code == 0, err
        docs = [d for p in sorted(out.glob("*.yaml")) for d in load_all(p.read_text())]
        secret = tmp_path / "secret"
        secret.mkdir()
        (secret / "token").write_text(TOKEN + "\n")
        volume = tmp_path / "pvc"
        volume.mkdir()

        # 1. the download Job, with the token from the Secret
        job, _ = _container(docs, "Job", "download")
        argv, env = _argv_env(job, {"/model-store": volume, TOKEN_DIR: secret, "/tmp": tmp_path}, {})
        res = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60)
        assert res.returncode == 0, res.stderr
        assert any(e.authorization == f"Bearer {TOKEN}" for e in hub.log)

        # 2. serve on the volume, with the rendered --auth-upstream (the Job's endpoint)
        port = _free_port()
        serve, _ = _container(docs, "Deployment", "serve")
        argv, env = _argv_env(serve, {"/model-store": volume}, {})
        argv[argv.index("--port") + 1] = str(port)
        argv[argv.index("--host") + 1] = "127.0.0.1"
        proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            end = time.monotonic() + 30
            while True:
                assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1, trust_env=False).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert time.monotonic() < end
                time.sleep(0.05)

            # 3. an engine pod: the copy step with the token, then the check
            fetch, _ = _container(docs, "PodTemplate", "fetch-model")
            service = next(a for a in fetch["command"] if a.startswith("http://") and ".svc" in a)
            hosts = {service: f"http://127.0.0.1:{port}"}

            def copy(token_dir: Path, local: Path) -> subprocess.CompletedProcess[str]:
                argv, env = _argv_env(fetch, {"/model-store": local, TOKEN_DIR: token_dir, "/tmp": tmp_path}, hosts)
                return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60)

            local = tmp_path / "local"
            done = copy(secret, local)
            assert done.returncode == 0, done.stdout + done.stderr
            # a token the Hub does not accept for the repo gets nothing from serve
            # (after the success: the fake Hub answers a refused HEAD with a body, which spoils
            # the connection serve keeps to it; the real Hub does not)
            wrong = tmp_path / "wrong"
            wrong.mkdir()
            (wrong / "token").write_text("hf_NotTheToken000000000000\n")
            refused = copy(wrong, tmp_path / "local-refused")
            assert refused.returncode == 4, refused.stdout + refused.stderr
            assert TOKEN not in refused.stdout + refused.stderr
            assert not list((tmp_path / "local-refused").rglob("model.safetensors"))
            check, _ = _container(docs, "PodTemplate", "wait-for-model")
            argv, env = _argv_env(check, {"/model-store": local}, {})
            argv[argv.index("--wait") + 1] = "5"
            res = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60)
            assert res.returncode == 0, res.stderr
            # the engine's view: HF_HUB_CACHE on the copy finds the pinned commit offline
            engine, _ = _container(docs, "PodTemplate", "engine")
            _, engine_env = _argv_env({"command": ["modelcache"], **engine}, {"/model-store": local}, {})
            snap = Path(engine_env["HF_HUB_CACHE"]) / "models--org--gated" / "snapshots" / repo.commit
            assert json.loads((snap / "config.json").read_text()) == {"model_type": "llama"}
        finally:
            proc.terminate()
            proc.wait(timeout=20)


def test_subpath_tenant_job_check_and_engine_agree_on_the_folder(tmp_path: Path) -> None:
    repo = Repo("org/public", {"config.json": b"{}", "tokenizer.json": b"{}", "model.safetensors": os.urandom(50_000)})
    with fault_server(repo) as hub:
        out = tmp_path / "manifests"
        code, _, err = run("--offline", "k8s", "render", "org/public", "--revision", repo.commit, "--size", "10Gi",
                           "--tenant", "a", "--isolation", "subpath", "--job-endpoint", hub.url, "-o", str(out))
        assert code == 0, err
        docs = [d for p in sorted(out.glob("*.yaml")) for d in load_all(p.read_text())]
        volume = tmp_path / "pvc"
        volume.mkdir()
        job, _ = _container(docs, "Job", "download")
        argv, env = _argv_env(job, {"/model-store": volume, TOKEN_DIR: tmp_path / "no-secret", "/tmp": tmp_path}, {})
        res = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60)
        assert res.returncode == 0, res.stderr
    # the check sees the whole volume (no subPath), the engine its tenant's folder (subPath)
    check, _ = _container(docs, "PodTemplate", "wait-for-model")
    argv, env = _argv_env(check, {"/model-store": volume}, {})
    argv[argv.index("--wait") + 1] = "2"
    res = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    engine, _ = _container(docs, "PodTemplate", "engine")
    sub = next(m for m in engine["volumeMounts"] if m["name"] == "model-cache")["subPath"]
    _, engine_env = _argv_env({"command": ["modelcache"], **engine}, {"/model-store": volume / sub}, {})
    assert (Path(engine_env["HF_HUB_CACHE"]) / "models--org--public" / "snapshots" / repo.commit / "config.json").is_file()


def test_the_ha_mirror_command_runs_and_mirrors(tmp_path: Path) -> None:
    repo = Repo("org/public", {"config.json": b"{}", "tokenizer.json": b"{}", "model.safetensors": os.urandom(50_000)})
    with fault_server(repo) as hub:
        out = tmp_path / "manifests"
        code, _, err = run("--offline", "k8s", "render", "org/public", "--revision", repo.commit, "--size", "10Gi",
                           "--mirror", "--mirror-upstream", hub.url, "-o", str(out))
        assert code == 0, err
        docs = [d for p in sorted(out.glob("*.yaml")) for d in load_all(p.read_text())]
        volume = tmp_path / "pvc"
        volume.mkdir()
        mirror, _ = _container(docs, "Deployment", "mirror")
        argv, env = _argv_env(mirror, {"/model-store": volume, TOKEN_DIR: tmp_path / "no-secret", "/tmp": tmp_path}, {})
        port = _free_port()
        argv[argv.index("--port") + 1] = str(port)
        argv[argv.index("--host") + 1] = "127.0.0.1"
        proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            end = time.monotonic() + 30
            while True:
                assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1, trust_env=False).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert time.monotonic() < end
                time.sleep(0.05)
            # a client of the mirror gets the model; the mirror filled its volume from the upstream
            client_cache = tmp_path / "client"
            res = subprocess.run([*CLI, "--endpoint", f"http://127.0.0.1:{port}", "--cache-dir", str(client_cache),
                                  "download", "org/public", "--revision", repo.commit],
                                 env={k: v for k, v in os.environ.items() if not k.startswith("HF_")},
                                 capture_output=True, text=True, timeout=60)
            assert res.returncode == 0, res.stderr
            assert list((volume / "hub").rglob("model.safetensors"))
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
