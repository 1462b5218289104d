"""``modelcache run`` as a real process with a real child: lease for the child's lifetime (GC keeps
the model), the child's exit code, download first, ``--offline``, signals."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from helpers.cli import run_cli
from helpers.live_server import live_server
from models_helpers import REPO, Cached

from modelcache import ModelCache, Settings
from modelcache.models import models_status

# The child: report what it sees, then wait for the test's go-ahead and exit with code 3.
CHILD = """
import json, os, pathlib, sys, time
out, go = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
snap = pathlib.Path(sys.argv[3])
seen = {k: os.environ.get(k) for k in ("HF_HUB_CACHE", "HF_HUB_OFFLINE", "HF_HOME", "MODELCACHE_SNAPSHOT",
                                       "MODELCACHE_CARD")}
seen["files"] = sorted(p.name for p in snap.iterdir())
out.write_text(json.dumps(seen))
deadline = time.time() + 30
while not go.exists() and time.time() < deadline:
    time.sleep(0.02)
sys.exit(3)
"""


def modelcache(cache: Path, *args: str, endpoint: str | None = None) -> subprocess.Popen:
    glob = ["--cache-dir", str(cache)] + (["--endpoint", endpoint] if endpoint else [])
    return subprocess.Popen([sys.executable, "-m", "modelcache", *glob, *args], env=dict(os.environ),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(path: Path, proc: subprocess.Popen, timeout: float = 20.0) -> dict:
    deadline = time.monotonic() + timeout
    while not path.exists() or not path.read_text():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the child did not start"
        time.sleep(0.02)
    return json.loads(path.read_text())


def cli_run(cache: Path, *args: str) -> tuple[int, str]:
    code, out, _err = run_cli("--cache-dir", str(cache), *args)
    return code, out


def test_run_leases_while_the_child_runs_and_returns_its_code(cached: Cached, tmp_path: Path) -> None:
    assert cli_run(cached.dir, "models", "add", "llama", "--repo", REPO)[0] == 0
    seen, go = tmp_path / "seen.json", tmp_path / "go"
    proc = modelcache(cached.dir, "run", "llama", "--replica", "pod-7", "--",
                      sys.executable, "-c", CHILD, str(seen), str(go), "{snapshot}")
    env = wait_for(seen, proc)
    assert env["HF_HUB_CACHE"] == str(cached.dir) and env["HF_HUB_OFFLINE"] == "1"
    assert env["HF_HOME"] == os.environ["HF_HOME"]  # untouched
    assert env["MODELCACHE_SNAPSHOT"] == str(cached.snapshot(cached.v1))
    assert "tokenizer.json" in env["files"] and "model-00001-of-00002.safetensors" in env["files"]

    status = models_status(cached.dir)
    model = status["models"][0]
    assert [r["replica"] for r in model["replicas"]] == ["pod-7"] and model["agree"] and model["current"]
    assert env["MODELCACHE_CARD"] == model["checksum"]

    code, out = cli_run(cached.dir, "gc", "--max-size", "0", "--json")  # GC wants everything gone
    assert code == 0
    protected = {(p["commit"], p["why"]) for p in json.loads(out)["protected"]}
    assert (cached.v1, "leased") in protected and cached.snapshot(cached.v1).is_dir()
    assert not cached.snapshot(cached.v2).exists()  # nothing held it

    go.touch()
    assert proc.wait(timeout=20) == 3, proc.communicate()
    mc = ModelCache(Settings(cache_dir=cached.dir, offline=True))
    assert mc.leases() == [] and models_status(cached.dir)["models"][0]["replicas"] == []
    cli_run(cached.dir, "gc", "--max-size", "0")
    assert cached.snapshot(cached.v1).exists()  # still registered: protected like a pin (issue #12)
    assert cli_run(cached.dir, "models", "rm", "llama")[0] == 0
    cli_run(cached.dir, "gc", "--max-size", "0")
    assert not cached.snapshot(cached.v1).exists()


def test_run_downloads_first_and_offline_fails_clearly(tmp_path: Path, demo_model: Path) -> None:
    source, node = tmp_path / "source", tmp_path / "node"
    ModelCache(Settings(cache_dir=source, offline=True)).import_folder(demo_model, REPO)
    seen, go = tmp_path / "seen.json", tmp_path / "go"
    go.touch()
    with live_server(source) as url:
        ModelCache(Settings(cache_dir=node, endpoint=url)).download(REPO, profile="tokenizer")  # incomplete

        proc = modelcache(node, "--offline", "run", REPO, "--", sys.executable, "-c", CHILD, str(seen), str(go), ".")
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 1 and "offline and not cached" in err and "hint:" in err, err
        assert "model-00001-of-00002.safetensors" in err and not seen.exists()

        proc = modelcache(node, "run", REPO, "--", sys.executable, "-c", CHILD, str(seen), str(go), "{snapshot}",
                          endpoint=url)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 3, err
    files = json.loads(seen.read_text())["files"]
    assert "tokenizer.json" in files and "model-00002-of-00002.safetensors" in files
    mc = ModelCache(Settings(cache_dir=node, offline=True))
    assert mc.check(REPO).ready and mc.leases() == []


def test_run_forwards_sigterm_and_reports_the_signal(cached: Cached, tmp_path: Path) -> None:
    started = tmp_path / "started"
    child = f"import pathlib, time; pathlib.Path({str(started)!r}).write_text('1'); time.sleep(30)"
    proc = modelcache(cached.dir, "--offline", "run", f"{REPO}@v2", "-q", "--", sys.executable, "-c", child)
    deadline = time.monotonic() + 20
    while not started.exists():
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.02)
    assert len(ModelCache(Settings(cache_dir=cached.dir, offline=True)).leases()) == 1
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=10) == 128 + signal.SIGTERM
    assert ModelCache(Settings(cache_dir=cached.dir, offline=True)).leases() == []


def test_run_command_not_found(cached: Cached) -> None:
    proc = modelcache(cached.dir, "run", f"{REPO}@{cached.v1}", "-q", "--", "/nonexistent/engine")
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 127 and "command not found" in err


def test_child_does_not_outlive_a_killed_run(cached: Cached, tmp_path: Path) -> None:
    """`modelcache run` killed with SIGKILL: its lease will expire, so the engine must stop too."""
    started = tmp_path / "pid"
    child = f"import os, pathlib, time; pathlib.Path({str(started)!r}).write_text(str(os.getpid())); time.sleep(60)"
    proc = modelcache(cached.dir, "--offline", "run", f"{REPO}@v2", "-q", "--", sys.executable, "-c", child)
    deadline = time.monotonic() + 20
    while not started.exists() or not started.read_text():
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.02)
    pid = int(started.read_text())
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
    raise AssertionError("the child outlived `modelcache run`")
