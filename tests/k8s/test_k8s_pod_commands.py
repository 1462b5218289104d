"""What the rendered pods run, as real processes: an init container's ``check --wait`` and a
download running as PID 1 stop at once on SIGTERM; ``serve`` on a fresh volume (no cache
directory yet) starts, creates it and answers ``/readyz`` instead of crash-looping until the
download Job has run."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from helpers.k8s import COMMIT

CLI = [sys.executable, "-c", "from modelcache.cli.main import main; main()"]


def _env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update(HF_HOME=str(tmp_path / "home"), HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1")
    return env


def _wait_for(predicate, what: str, limit: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    end = time.monotonic() + limit
    while not predicate():
        assert time.monotonic() < end, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_check_wait_stops_promptly_on_sigterm(tmp_path: Path) -> None:
    proc = subprocess.Popen([*CLI, "--cache-dir", str(tmp_path / "cache"),
                             "check", "org/m", "--revision", COMMIT, "--wait", "3600", "--interval", "0.1"],
                            env=_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # once it polls (a "waiting:" line), SIGTERM must end it, not the pod's grace period
        line = proc.stderr.readline()
        assert "waiting" in line, line
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143 and "SIGTERM" in err and "Traceback" not in err


def test_serve_on_a_fresh_volume_creates_the_cache_and_is_ready(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cache = tmp_path / "volume" / "hub"
    proc = subprocess.Popen([*CLI, "--cache-dir", str(cache), "serve",
                             "--port", str(port)], env=_env(tmp_path), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    try:
        def ready() -> bool:
            assert proc.poll() is None, proc.stderr.read()
            try:
                return httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1, trust_env=False).status_code == 200
            except httpx.HTTPError:
                return False

        _wait_for(ready, "serve to answer /readyz")
        assert cache.is_dir()
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            _, err = proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
    assert "Traceback" not in err


def _children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _catches_sigterm(pid: int) -> bool:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigCgt:"):
            return bool(int(line.split()[1], 16) & (1 << (signal.SIGTERM - 1)))
    return False


@pytest.mark.skipif(not shutil.which("unshare"), reason="needs unshare")
def test_pid_1_stops_on_sigterm(tmp_path: Path) -> None:
    """As a container's PID 1 (the rendered pods set `command:`, so no init runs before us) a
    process without a SIGTERM handler never sees SIGTERM: the pod would take its grace period."""
    probe = subprocess.run(["unshare", "--pid", "--fork", "true"], capture_output=True, timeout=10)
    if probe.returncode != 0:
        pytest.skip("unshare --pid is not permitted here")
    # a download of a repo from an endpoint that never answers: blocked in the network, as PID 1
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        proc = subprocess.Popen(["unshare", "--pid", "--fork", *CLI, "--endpoint", url, "--cache-dir",
                                 str(tmp_path / "cache"), "download", "org/m", "--revision", COMMIT],
                                env={**_env(tmp_path), "HF_HUB_OFFLINE": "0"}, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        try:
            _wait_for(lambda: bool(_children(proc.pid)), "the PID 1 process")
            (inner,) = _children(proc.pid)
            _wait_for(lambda: _catches_sigterm(inner), "a SIGTERM handler (SigCgt)")
            os.kill(inner, signal.SIGTERM)
            _, err = proc.communicate(timeout=20)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert "stopped: SIGTERM" in err, err
