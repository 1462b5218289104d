"""`modelcache doctor` on real, seeded failures: no token, wrong token, unwritable cache,
read-only mount on purpose, missing shard, wrong size, full disk, `main` moved upstream,
endpoint down — each named with its fix. Real loopback servers, real mounts (as root)."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers.cli import run_cli
from helpers.repos import model_repo
from helpers.fault_server import Repo, fault_server

from modelcache import ModelCache, Settings
from modelcache.doctor import DoctorOptions, run_doctor
from modelcache.tokens import TokenSource

GOOD = "hf_testTOKENdoctorGOODAAAAAAAAAAAAAAAA"
BAD = "hf_testTOKENdoctorBADBBBBBBBBBBBBBBBBBB"
DEMO = "org/tiny"
MiB = 1024 * 1024
ROOT = os.geteuid() == 0


def run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    return run_cli(*args, env=env)


def doctor_json(*args: str, env: dict[str, str] | None = None) -> tuple[int, dict[str, dict]]:
    code, out, _ = run(*args, "--json", env=env)
    data = json.loads(out)
    assert data["exit_code"] == code
    return code, {f["name"]: f for f in data["findings"]}


def line_of(out: str, words: str) -> tuple[str, str]:
    """The check line containing ``words`` and the line under it (its fix, if any)."""
    lines = out.splitlines()
    for i, line in enumerate(lines):
        if words in line:
            return line, lines[i + 1] if i + 1 < len(lines) else ""
    raise AssertionError(f"no line with {words!r} in:\n{out}")


def small_repo(repo_id: str = "org/gated", weights: int = 20_000) -> Repo:
    return model_repo(repo_id, weights=weights)


def import_demo(cache: Path, demo_model: Path) -> ModelCache:
    mc = ModelCache(Settings(cache_dir=cache, offline=True))
    mc.import_folder(demo_model, DEMO)
    return mc


def _sh(*cmd: str) -> bool:
    return subprocess.run(cmd, check=False, capture_output=True).returncode == 0


@contextlib.contextmanager
def mounted(target: Path, *cmds: tuple[str, ...]) -> Iterator[bool]:
    """Run mount commands as root (yield True), or yield False when mounting is impossible."""
    target.mkdir(parents=True, exist_ok=True)
    ok = ROOT and all(_sh(*c) for c in cmds)
    try:
        yield ok
    finally:
        if ROOT:
            for _ in cmds:
                if not _sh("umount", str(target)):
                    _sh("umount", "-l", str(target))


def closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


# -- tokens ------------------------------------------------------------------------------------------------
def test_no_token(tmp_path: Path) -> None:
    with fault_server(small_repo()) as srv:
        srv.valid_tokens, srv.gated = {GOOD}, True
        code, out, _ = run("--cache-dir", str(tmp_path / "c"), "--endpoint", srv.url, "doctor", "org/gated")
    assert code == 1
    line, fix = line_of(out, "no token")
    assert line.startswith("FAIL") and "org/gated cannot be read without one" in line
    assert "fix:" in fix and "HF_TOKEN" in fix and "--token-file" in fix
    assert "set a token" in line_of(out, "is gated")[1]


def test_wrong_token(tmp_path: Path) -> None:
    with fault_server(small_repo()) as srv:
        srv.valid_tokens, srv.gated = {GOOD}, True
        code, out, _ = run("--cache-dir", str(tmp_path / "c"), "--endpoint", srv.url, "doctor", "org/gated",
                           env={"HF_TOKEN": BAD})
        assert any(e.path == "/api/whoami-v2" for e in srv.log)
    assert code == 1 and BAD not in out
    assert line_of(out, "token found via HF_TOKEN")[0].startswith("ok")
    line, fix = line_of(out, "rejects the token")
    assert line.startswith("FAIL") and "create a new token" in fix
    assert "fix the token first" in line_of(out, "is gated")[1]


def test_good_token_and_everything_fine(tmp_path: Path) -> None:
    with fault_server(small_repo()) as srv:
        srv.valid_tokens, srv.gated = {GOOD}, True
        ModelCache(Settings(cache_dir=tmp_path / "c", endpoint=srv.url, token=TokenSource(value=GOOD))
                   ).download("org/gated")
        code, f = doctor_json("--cache-dir", str(tmp_path / "c"), "--endpoint", srv.url, "doctor", "org/gated",
                              env={"HF_TOKEN": GOOD})
    assert code == 0, f
    assert [f[n]["status"] for n in ("token", "endpoint", "token-valid", "repo-access", "cache")] == ["ok"] * 5
    assert f["cache"]["message"].startswith("hit") and "same as upstream" in f["cache"]["message"]
    assert f["free-space"]["data"]["needed"] == 0


# -- the cache directory -------------------------------------------------------------------------------------
def test_unwritable_cache(tmp_path: Path, demo_model: Path) -> None:
    """As root (CI) chmod cannot stop a write: the cache is a real read-only mount. Else chmod 0500."""
    cache = tmp_path / "cache"
    with mounted(cache, ("mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(cache))) as is_mount:
        if not is_mount:
            cache.chmod(0o500)
        try:
            code, out, _ = run("--cache-dir", str(cache), "--offline", "doctor")
        finally:
            if not is_mount:
                cache.chmod(0o700)
    assert code == 1
    if is_mount:
        line, fix = line_of(out, "read-only mount")
        assert line.startswith("FAIL") and "downloads cannot write here" in line
        assert "read-write" in fix and "--read-only" in fix
        assert "read-only]" in line_of(out, "in memory (tmpfs)")[0]
    else:
        line, fix = line_of(out, "cannot write")
        assert line.startswith("FAIL") and "chmod" in fix and "chown" in fix


def _as_pod_user(uid: int, gid: int, mode: int) -> dict[str, dict]:
    """Run doctor's checks as uid/gid 65534 (a pod's runAsUser) on a cache owned by ``uid:gid`` with ``mode``."""
    base = Path(tempfile.mkdtemp(prefix="mc-doctor-"))  # tmp_path's parents are 0700: another uid cannot enter
    try:
        base.chmod(0o755)
        cache = base / "cache"
        cache.mkdir()
        os.chown(cache, uid, gid)
        cache.chmod(mode)
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # child: become the pod's user and run the checks
            try:
                os.close(r)
                os.setgroups([])
                os.setgid(65534)
                os.setuid(65534)
                report = run_doctor(Settings(cache_dir=cache, offline=True), DoctorOptions())
                os.write(w, json.dumps(report.to_dict()).encode())
            finally:
                os._exit(0)
        os.close(w)
        with os.fdopen(r, "rb") as fh:
            data = json.loads(fh.read() or b"{}")
        os.waitpid(pid, 0)
    finally:
        subprocess.run(["rm", "-rf", str(base)], check=False)
    print("\n".join(f"{f['status']:5} {f['message']}\n      fix: {f['fix']}" for f in data["findings"]))
    assert data["exit_code"] == 1
    return {f["name"]: f for f in data["findings"]}


@pytest.mark.skipif(not ROOT or not hasattr(os, "fork"), reason="needs root to run the checks as another user")
def test_unwritable_cache_for_the_pods_user() -> None:
    """The cache's owner, group and mode against a pod's user (uid 65534): each case names its fix."""
    f = _as_pod_user(65534, 65534, 0o500)  # the pod's own folder, chmod 0500
    assert f["permissions"]["status"] == "fail" and "mode 0500" in f["permissions"]["message"]
    assert "uid 65534 (gid 65534) cannot write it" in f["permissions"]["message"]
    assert "chmod -R u+rwX" in f["permissions"]["fix"] and "--read-only" in f["permissions"]["fix"]
    assert f["writable"]["status"] == "fail" and "permission denied" in f["writable"]["message"]

    f = _as_pod_user(0, 65534, 0o2750)  # root's folder, the pod's group may read but not write
    assert "cannot write it" in f["permissions"]["message"]
    assert "chmod -R g+rwX" in f["permissions"]["fix"] and "fsGroup" in f["permissions"]["fix"]

    f = _as_pod_user(0, 1234, 0o2770)  # group-writable, but the pod lacks the group
    assert "not readable" in f["permissions"]["message"]
    assert "fsGroup: 1234" in f["permissions"]["fix"] and "chown -R 65534:65534" in f["permissions"]["fix"]


def test_read_only_mount_on_purpose(tmp_path: Path, demo_model: Path) -> None:
    """An engine pod: the cache mounted read-only, --read-only given → ok, and the model is a hit."""
    src, cache = tmp_path / "src", tmp_path / "ro"
    import_demo(src, demo_model)
    with mounted(cache, ("mount", "--bind", str(src), str(cache)),
                 ("mount", "-o", "remount,ro,bind", str(cache))) as is_mount:
        target = cache if is_mount else src
        if not is_mount:
            subprocess.run(["chmod", "-R", "a-w", str(src)], check=True)
        try:
            code, out, _ = run("--cache-dir", str(target), "--offline", "doctor", DEMO, "--read-only")
            code_rw, out_rw, _ = run("--cache-dir", str(target), "--offline", "doctor", DEMO)
        finally:
            if not is_mount:
                subprocess.run(["chmod", "-R", "u+w", str(src)], check=True)
    assert code == 0, out
    assert line_of(out, "read-only on purpose")[0].startswith("ok")
    assert line_of(out, "hit:")[0].startswith("ok")
    assert "skip  read-only cache: nothing will be written" in out
    assert code_rw == 1 and "--read-only" in out_rw  # the same mount without --read-only: a failure naming the flag


def test_read_only_but_not_mounted(tmp_path: Path) -> None:
    code, f = doctor_json("--cache-dir", str(tmp_path / "absent"), "--offline", "doctor", DEMO, "--read-only")
    assert code == 1 and f["cache-dir"]["status"] == "fail" and "is the volume mounted" in f["cache-dir"]["message"]
    assert f["cache"]["status"] == "fail" and "miss" in f["cache"]["message"]


# -- cache state ---------------------------------------------------------------------------------------------
def test_missing_shard(tmp_path: Path, demo_model: Path) -> None:
    mc = import_demo(tmp_path / "c", demo_model)
    commit = mc.check(DEMO).commit
    (mc.layout(DEMO).snapshot(commit) / "model-00002-of-00002.safetensors").unlink()  # type: ignore[arg-type]
    code, out, _ = run("--cache-dir", str(tmp_path / "c"), "--offline", "doctor", DEMO)
    assert code == 1
    line, fix = line_of(out, "miss:")
    assert line.startswith("FAIL") and "1 missing: model-00002-of-00002.safetensors" in line
    assert f"modelcache download {DEMO}" in fix
    # the blob is still there: a download only relinks it
    assert "nothing more to download (from the completeness record)" in out
    # the tokenizer profile does not need the shard
    assert run("--cache-dir", str(tmp_path / "c"), "--offline", "doctor", DEMO, "--profile", "tokenizer")[0] == 0


def test_wrong_size(tmp_path: Path, demo_model: Path) -> None:
    mc = import_demo(tmp_path / "c", demo_model)
    shard = mc.layout(DEMO).snapshot(mc.check(DEMO).commit) / "model-00001-of-00002.safetensors"  # type: ignore[arg-type]
    blob = shard.resolve()
    blob.chmod(0o644)
    with open(blob, "r+b") as fh:
        fh.truncate(100)
    code, f = doctor_json("--cache-dir", str(tmp_path / "c"), "--offline", "doctor", DEMO)
    assert code == 1 and f["cache"]["status"] == "fail"
    assert "wrong size: model-00001-of-00002.safetensors (100 bytes, expected 2520)" in f["cache"]["message"]
    assert f["free-space"]["data"]["needed"] == 2520


def test_main_moved_upstream(tmp_path: Path, demo_model: Path) -> None:
    mc = import_demo(tmp_path / "c", demo_model)
    cached = mc.check(DEMO).commit
    with fault_server(small_repo(DEMO)) as srv:
        code, out, _ = run("--cache-dir", str(tmp_path / "c"), "--endpoint", srv.url, "doctor", DEMO)
        upstream = srv.repo.commit
    assert code == 0, out  # a warning, not a failure: the cached revision still works
    line, fix = line_of(out, "moved upstream")
    assert line.startswith("warn") and f"main moved upstream: cached {cached[:12]}, upstream {upstream[:12]}" in line
    assert "download again" in fix and "pin the revision" in fix


def test_not_cached_at_all(tmp_path: Path) -> None:
    code, f = doctor_json("--cache-dir", str(tmp_path / "c"), "--offline", "doctor", "org/none")
    assert f["cache"]["status"] == "warn" and "not in the cache" in f["cache"]["message"]
    assert "modelcache download org/none" in f["cache"]["fix"] and code == 0


# -- space -----------------------------------------------------------------------------------------------------
def test_full_disk(tmp_path: Path) -> None:
    mnt = tmp_path / "small"
    with mounted(mnt, ("mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt))) as is_mount:
        if not is_mount:
            pytest.skip("cannot mount a 1 MiB tmpfs here (needs root)")
        with fault_server(small_repo("org/big", weights=2 * MiB)) as srv:
            code, out, _ = run("--cache-dir", str(mnt), "--endpoint", srv.url, "doctor", "org/big")
    assert code == 1
    line, fix = line_of(out, "needs")
    assert line.startswith("FAIL") and "org/big needs 2.0 MiB more (from the endpoint's file list)" in line
    assert "1.0 MiB free" in line and "bigger volume" in fix and "modelcache gc" in fix


def test_budget(tmp_path: Path) -> None:
    with fault_server(small_repo("org/big", weights=2 * MiB)) as srv:
        assert run("--cache-dir", str(tmp_path / "c"), "quota", "set", "1MiB")[0] == 0
        code, f = doctor_json("--cache-dir", str(tmp_path / "c"), "--endpoint", srv.url, "doctor", "org/big")
    assert code == 1 and f["free-space"]["status"] == "fail" and "budget" in f["free-space"]["message"]
    assert "quota set" in f["free-space"]["fix"]


# -- network ---------------------------------------------------------------------------------------------------
def test_endpoint_refused_skips_repo_checks(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    code, out, _ = run("--cache-dir", str(tmp_path / "c"), "--endpoint", url, "doctor", DEMO, env={"HF_TOKEN": GOOD})
    assert code == 1
    line, fix = line_of(out, "refused the connection")
    assert line.startswith("FAIL") and "HF_ENDPOINT" in fix
    assert "skip  token validity not checked: the endpoint cannot be reached" in out
    assert f"skip  access to {DEMO} not checked" in out


def test_offline_touches_no_network(tmp_path: Path, demo_model: Path) -> None:
    import_demo(tmp_path / "c", demo_model)
    with fault_server(small_repo(DEMO)) as srv:
        code, out, _ = run("--cache-dir", str(tmp_path / "c"), "--endpoint", srv.url, "--offline", "doctor", DEMO,
                           env={"HF_TOKEN": GOOD})
        assert srv.log == []
    assert code == 0 and "skip  offline" in out


def test_bad_input_and_json_shape(tmp_path: Path) -> None:
    assert run("--cache-dir", str(tmp_path), "--offline", "doctor", "not a repo")[0] == 2
    assert run("--cache-dir", str(tmp_path), "--offline", "doctor", "a/b@v1", "--revision", "v2")[0] == 2
    code, out, _ = run("--cache-dir", str(tmp_path), "--offline", "doctor", "--json")
    data = json.loads(out)
    assert code == 0 and data["ok"] and data["cache_dir"] == str(tmp_path)
    assert {f["name"] for f in data["findings"]} >= {"token", "endpoint", "cache-dir", "filesystem", "permissions",
                                                      "writable", "free-space"}
    assert all(set(f) == {"name", "status", "message", "fix", "data"} for f in data["findings"])
