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


def test_workers_refused_with_a_mirror(tmp_path: Path) -> None:
    p = subprocess.run([sys.executable, "-m", "modelcache", "--cache-dir", str(tmp_path), "serve", "--workers", "2",
                        "--upstream", "http://127.0.0.1:9"], capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and "--workers" in p.stderr
