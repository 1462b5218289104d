"""`modelcache serve` as users start it: a real process, one or several workers."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from helpers.live_server import import_demo

REPO = "modelcache/tiny-llama"


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("workers", [1, 2])
def test_serve_process(tmp_path: Path, workers: int) -> None:
    cache = tmp_path / "c"
    record = import_demo(cache)
    port = _port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    proc = subprocess.Popen([sys.executable, "-m", "modelcache", "--cache-dir", str(cache), "serve", "--port", str(port),
                             "--workers", str(workers)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline and proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            time.sleep(0.1)
        for _ in range(4):
            r = httpx.get(f"http://127.0.0.1:{port}/{REPO}/resolve/main/config.json")
            assert r.status_code == 200 and r.headers["X-Repo-Commit"] == record.commit
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)


def test_serve_on_a_fresh_volume_creates_the_cache_and_is_ready(tmp_path: Path) -> None:
    cache = tmp_path / "fresh" / "hub"
    port = _port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    proc = subprocess.Popen([sys.executable, "-m", "modelcache", "--cache-dir", str(cache), "serve", "--port", str(port)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                r = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline and proc.poll() is None
                time.sleep(0.1)
        assert r.status_code == 200 and r.json() == {"ready": True}
        assert cache.is_dir()
        r = httpx.get(f"http://127.0.0.1:{port}/{REPO}/resolve/main/config.json")
        assert r.status_code == 404 and r.headers["X-Error-Code"] == "RepoNotFound"
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)
