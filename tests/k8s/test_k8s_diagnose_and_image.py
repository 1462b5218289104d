"""The diagnosis rules as pure functions over pod dicts, and the image's Dockerfile."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from modelcache.k8s.diagnose import (
    diagnose_job,
    diagnose_pod,
    last_error,
    last_progress,
    progress_text,
)

ROOT = Path(__file__).resolve().parents[2]


def pod(state: dict[str, Any], *, init: bool = False, reason: str | None = None, **status: Any) -> dict[str, Any]:
    cs = {"name": "download", "image": "modelcache:0.1.0", "state": state}
    key = "initContainerStatuses" if init else "containerStatuses"
    body: dict[str, Any] = {"phase": "Failed", key: [cs], **status}
    if reason:
        body["reason"] = reason
    return {"spec": {"containers": [{"name": "download", "resources": {"limits": {"memory": "2Gi"}}}],
                     "volumes": [{"name": "hf-token", "secret": {"secretName": "team-token"}}]},
            "status": body}


def exited(code: int) -> dict[str, Any]:
    return {"terminated": {"exitCode": code, "reason": "Error"}}


@pytest.mark.parametrize("code, log, reason, exit_code", [
    (3, "error: org/x was not found at the endpoint (HTTP 404)\n  hint: check the repo id\n", "not-found", 3),
    (5, "error: cannot connect to https://huggingface.co\n", "network", 5),
    (6, "error: sha256 mismatch\n", "integrity", 6),
    (2, "error: invalid revision\n", "bad-input", 1),
    (1, "Traceback ...\nOSError: [Errno 28] No space left on device\n", "out-of-disk", 7),
    (4, "error: access denied (HTTP 403)\n", "token-rejected", 4),
    (1, "something else\n", "failed", 1),
])
def test_exit_codes_and_logs(code: int, log: str, reason: str, exit_code: int) -> None:
    found = diagnose_pod(pod(exited(code)), {"download": log})
    assert found is not None and found.reason == reason and found.exit_code == exit_code and found.hint


def test_the_error_line_and_its_hint_travel_into_the_message() -> None:
    log = '{"event": "start"}\nerror: org/x was not found (HTTP 404)\n  hint: check the repo id\n'
    assert last_error(log) == "org/x was not found (HTTP 404) (hint: check the repo id)"
    found = diagnose_pod(pod(exited(3)), {"download": log})
    assert found and "org/x was not found" in found.message


def test_the_token_hint_names_the_secret_the_pod_mounts() -> None:
    found = diagnose_pod(pod(exited(4)), {"download": "error: HTTP 401\n"})
    assert found and "team-token" in found.hint


@pytest.mark.parametrize("state, reason", [
    ({"waiting": {"reason": "ErrImagePull", "message": "not found"}}, "image-pull"),
    ({"waiting": {"reason": "CreateContainerConfigError", "message": 'secret "x" not found'}}, "config"),
    ({"terminated": {"exitCode": 137, "reason": "OOMKilled"}}, "oom"),
])
def test_container_states(state: dict[str, Any], reason: str) -> None:
    found = diagnose_pod(pod(state, init=True))
    assert found is not None and found.reason == reason


def test_healthy_and_evicted_pods() -> None:
    assert diagnose_pod(pod({"running": {}})) is None
    assert diagnose_pod(pod({"terminated": {"exitCode": 0}})) is None
    found = diagnose_pod(pod({"running": {}}, reason="Evicted", message="low on ephemeral-storage"))
    assert found and found.reason == "evicted" and "ephemeral-storage" in found.message
    assert diagnose_job({"status": {"conditions": [{"type": "Failed", "status": "True",
                                                    "reason": "DeadlineExceeded"}]}}).reason == "deadline"
    assert diagnose_job({"status": {}}) is None


def test_progress_lines() -> None:
    log = 'junk\n{"event": "progress", "bytes_done": 512, "bytes_total": 1024, "files_done": 1, ' \
          '"files_total": 2, "rate_bps": 256, "eta_s": 2.0}\n{not json\n'
    rec = last_progress(log)
    assert rec and progress_text(rec) == " 50.0% 512 B/1.0 KiB, files 1/2, 256 B/s, ETA 2s"
    assert last_progress("nothing here") is None


def test_dockerfile_is_pinned_slim_and_non_root() -> None:
    text = (ROOT / "Dockerfile").read_text()
    base = next(line.split("=", 1)[1] for line in text.splitlines() if line.startswith("ARG PYTHON_IMAGE="))
    assert re.fullmatch(r"docker\.io/library/python:3\.11[.0-9]*-slim-bookworm@sha256:[0-9a-f]{64}", base)
    froms = [line.split()[1] for line in text.splitlines() if line.startswith("FROM ")]
    assert froms and all(f.startswith("${PYTHON_IMAGE}") for f in froms)
    user = [line for line in text.splitlines() if line.startswith("USER ")]
    assert user and user[-1].split()[1].split(":")[0] not in ("0", "root")
    assert 'ENTRYPOINT ["/usr/bin/tini", "--", "modelcache"]' in text and ":latest" not in text
    assert "--require-hashes -r /tmp/requirements.txt" in text and "--require-hashes -r /tmp/build-requirements.txt" in text
    assert "pip install --no-deps /wheels/" in text and "tini=" in text
    for label in ("title", "version", "revision", "created", "licenses", "base.name"):
        assert f"org.opencontainers.image.{label}=" in text
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".git", ".venv", "tests", "deploy/recipes"} <= set(ignored) and "deploy" not in ignored


def _lock(path: Path) -> dict[str, str]:
    """name → version; every requirement pinned with ``==`` and at least one sha256."""
    text = path.read_text()
    entries = re.findall(r"^([a-z0-9._-]+)==([^ \\\n]+)((?: \\\n    --hash=sha256:[0-9a-f]{64})+)$", text, re.M)
    assert len(entries) == len([line for line in text.splitlines() if "==" in line])
    return {name: version for name, version, _ in entries}


def test_the_lock_covers_every_runtime_dependency() -> None:
    from packaging.requirements import Requirement

    try:
        import tomllib
    except ImportError:  # pragma: no cover
        pytest.skip("tomllib")
    locked = _lock(ROOT / "deploy" / "image" / "requirements.txt")
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    for dep in map(Requirement, deps):
        name = dep.name.lower().replace("_", "-")
        assert name in locked, f"{name} is not in deploy/image/requirements.txt"
        assert dep.specifier.contains(locked[name], prereleases=True), (name, locked[name], str(dep.specifier))
    build = _lock(ROOT / "deploy" / "image" / "build-requirements.txt")
    assert "setuptools" in build


def test_make_image_skips_without_a_builder(tmp_path: Path) -> None:
    import shutil
    import subprocess

    if not shutil.which("make"):
        pytest.skip("no make")
    env = {"PATH": str(tmp_path), "HOME": str(tmp_path)}  # neither docker nor podman on PATH
    make = shutil.which("make")
    res = subprocess.run([make, "-s", "image"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0 and "skipped: no container builder" in res.stdout
