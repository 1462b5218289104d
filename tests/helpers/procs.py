"""Real ``modelcache`` processes for tests: the environment they run with, and servers.

    env = clean_env()                                  # os.environ without HF_* variables
    with serve_process(cache, "--upstream", url) as (proc, base_url): ...

A server process is given a port that was free a moment ago; if another process took it in
between (the process exits with "address already in use"), it is started again on another.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

__all__ = ["clean_env", "free_port", "modelcache_cmd", "serve_process", "stop"]


def clean_env(**extra: str) -> dict[str, str]:
    """The process environment without ``HF_*`` variables (plus ``extra``)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_", "HUGGING_FACE_"))}
    env.update(extra)
    return env


def modelcache_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "modelcache", *args]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def stop(proc: subprocess.Popen[bytes], timeout: float = 20) -> str:
    """SIGTERM, wait (SIGKILL past ``timeout``); what it wrote on stderr."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    return (proc.stderr.read() if proc.stderr else b"").decode(errors="replace")


@contextmanager
def serve_process(cache: Path, *serve_args: str, env: dict[str, str] | None = None,
                  ready_path: str = "/healthz") -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """``modelcache --cache-dir CACHE serve --port P SERVE_ARGS``; yields once ``ready_path`` answers."""
    for _attempt in range(5):
        port = free_port()
        proc = subprocess.Popen(modelcache_cmd("--cache-dir", str(cache), "serve", "--port", str(port), *serve_args),
                                env=env or clean_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while proc.poll() is None and time.monotonic() < deadline:
            try:
                httpx.get(url + ready_path, timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.05)
        if proc.poll() is None and time.monotonic() < deadline:
            try:
                yield proc, url
            finally:
                stop(proc)
            return
        err = stop(proc)
        if "address already in use" not in err.lower():
            raise AssertionError(f"modelcache serve did not start: {err}")
    raise AssertionError("no free port after 5 attempts")
