"""What the rendered pods run, as real processes: an init container's ``check --wait`` stops at
once on SIGTERM; ``serve`` on a fresh volume (no cache directory yet) starts, creates it and
answers ``/readyz`` instead of crash-looping until the download Job has run."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from conftest import COMMIT

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
    assert "created the empty cache directory" in err
