"""Serving speed: ``modelcache serve`` against nginx on the same cache, loaded by ``wrk``.

One cache is imported from random files; modelcache serves it through its HF-compatible
``resolve`` route, nginx with ``sendfile`` from the snapshot folder (a regex ``location`` maps the
same URLs to the same files). Load: ``wrk -t2 -c<connections>``:

- big: a Lua script rotates GETs over the shards, so every connection streams whole shards
  (bytes/s);
- small: HEAD and GET of ``config.json``, as a client resolving a small file does (requests/s).
  wrk cannot time HEAD (it waits for a body the ``Content-Length`` announces), so GETs are
  loaded with wrk and HEADs with ``ab -k -i`` at the same concurrency, one after the other; the
  figure is the rate of an even mix, ``2 / (1/get + 1/head)``. ``ab`` speaks HTTP/1.0 with
  ``Connection: Keep-Alive``: a server that closes HTTP/1.0 connections pays a new TCP
  connection per HEAD (``ab`` reports "Keep-Alive requests: 0"); nginx and ``modelcache serve``
  keep them.

Everything runs on this machine: wrk's CPU competes with the server's, the same way for both.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any, Callable

from .common import PY, WORK, MiB, clean_env
from .measure import children, tree_cpu_seconds, tree_rss_mb

__all__ = ["SERVE_REPO", "ab_head", "mix_rate", "parse_wrk", "run_serve", "wrk", "wrk_script"]

SERVE_WORK = WORK / "serve"
SERVE_REPO = "bench/serve"
_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3}


def _free_port() -> int:
    # picked, then bound by the server: a race on a busy box, caught by the content check below
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before listening on {port}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


def make_source(scale: float) -> Path:
    """4 shards of 256 MiB × scale, a ~650-byte config.json and a tokenizer.json (made once)."""
    src = SERVE_WORK / f"src-{scale:g}"
    shards, size = 4, max(MiB, int(256 * MiB * scale))
    if (src / ".done").exists():
        return src
    shutil.rmtree(src, ignore_errors=True)
    src.mkdir(parents=True)
    (src / "config.json").write_text(json.dumps({"model_type": "llama", "hidden_size": 4096, "pad": "x" * 600}))
    (src / "tokenizer.json").write_text(json.dumps({"model": {"type": "BPE"}}))
    block = os.urandom(MiB)
    for i in range(shards):
        with open(src / f"model-{i + 1:05d}-of-{shards:05d}.safetensors", "wb") as fh:
            for j in range(size // MiB):
                fh.write(bytes([i, j % 256]) + block[2:])
    (src / ".done").write_text("ok")
    return src


def import_cache(src: Path) -> tuple[Path, Path]:
    """``modelcache import`` of ``src``; returns (cache dir, snapshot folder)."""
    cache = SERVE_WORK / "cache"
    shutil.rmtree(cache, ignore_errors=True)
    out = subprocess.run([PY, "-m", "modelcache", "--cache-dir", str(cache), "import", str(src), "--repo", SERVE_REPO],
                         check=True, capture_output=True, text=True, env=clean_env())
    return cache, Path(out.stdout.strip().splitlines()[-1])


def start_modelcache(cache: Path, workers: int = 1) -> tuple[subprocess.Popen[bytes], int]:
    """``modelcache serve`` on a free port."""
    port = _free_port()
    proc = subprocess.Popen([PY, "-m", "modelcache", "--cache-dir", str(cache), "serve", "--port", str(port),
                             "--workers", str(workers)], env=clean_env(), stderr=subprocess.DEVNULL)
    _wait_port(port, proc)
    if workers > 1:
        _wait_workers(proc, workers)
    return proc, port


def _wait_workers(proc: subprocess.Popen[bytes], workers: int, timeout: float = 20) -> None:
    """Poll until the supervisor has forked ``workers`` children."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len(children(proc.pid)) >= workers:
            time.sleep(0.5)  # imports done in the last worker (no signal to poll for)
            return
        time.sleep(0.1)


def start_nginx(snapshot: Path) -> tuple[subprocess.Popen[bytes], int]:
    """nginx (``sendfile on``) mapping ``/<repo>/resolve/<rev>/<path>`` to ``snapshot/<path>``."""
    port = _free_port()
    conf_dir = SERVE_WORK / "nginx"
    shutil.rmtree(conf_dir, ignore_errors=True)
    (conf_dir / "tmp").mkdir(parents=True)
    conf = conf_dir / "nginx.conf"
    tmp = conf_dir / "tmp"
    conf.write_text(f"""
worker_processes auto;
daemon off;
pid {conf_dir}/nginx.pid;
error_log {conf_dir}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    client_body_temp_path {tmp};
    proxy_temp_path {tmp};
    fastcgi_temp_path {tmp};
    uwsgi_temp_path {tmp};
    scgi_temp_path {tmp};
    default_type application/octet-stream;
    server {{
        listen 127.0.0.1:{port};
        location ~ ^/{SERVE_REPO}/resolve/[^/]+/(.+)$ {{ alias {snapshot}/$1; }}
    }}
}}
""")
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    proc = subprocess.Popen([nginx, "-c", str(conf), "-p", str(conf_dir)], stderr=subprocess.DEVNULL)
    _wait_port(port, proc)
    return proc, port


def wrk_script(requests: list[tuple[str, str]]) -> str:
    """A wrk Lua script that cycles through ``(method, path)`` pairs."""
    items = ", ".join(f'{{"{m}", "{p}"}}' for m, p in requests)
    return f"""
local reqs = {{{items}}}
local i = 0
request = function()
  i = i % #reqs + 1
  return wrk.format(reqs[i][1], reqs[i][2])
end
"""


def parse_wrk(out: str) -> dict[str, float]:
    """requests/s, bytes/s and non-2xx count from wrk's report."""
    req = re.search(r"Requests/sec:\s+([\d.]+)", out)
    m = re.search(r"Transfer/sec:\s+([\d.]+)([KMG]?)B", out)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"requests_per_s": float(req.group(1)) if req else 0.0,
            "bytes_per_s": float(m.group(1)) * _UNITS[m.group(2)] if m else 0.0,
            "non_2xx": int(errors.group(1)) if errors else 0}


def wrk(base: str, requests: list[tuple[str, str]], duration: float, connections: int) -> dict[str, float]:
    """One wrk run of ``duration`` seconds cycling through ``requests``."""
    script = SERVE_WORK / "load.lua"
    script.write_text(wrk_script(requests))
    out = subprocess.run(["wrk", "-t2", f"-c{connections}", f"-d{max(1, round(duration))}s", "--timeout", "60s",
                          "-s", str(script), base], capture_output=True, text=True, check=True).stdout
    return parse_wrk(out)


def ab_head(url: str, duration: float, connections: int) -> dict[str, float]:
    """``ab -k -i`` (keep-alive HEAD requests) on ``url`` for ``duration`` seconds."""
    out = subprocess.run(["ab", "-k", "-i", "-q", "-c", str(connections), "-t", f"{max(1, round(duration))}",
                          "-n", "100000000", url], capture_output=True, text=True).stdout
    rps = re.search(r"Requests per second:\s+([\d.]+)", out)
    failed = re.search(r"Failed requests:\s+(\d+)", out)
    non2xx = re.search(r"Non-2xx responses:\s+(\d+)", out)
    return {"requests_per_s": float(rps.group(1)) if rps else 0.0,
            "non_2xx": (int(failed.group(1)) if failed else 0) + (int(non2xx.group(1)) if non2xx else 0)}


def mix_rate(get_rps: float, head_rps: float) -> float:
    """Requests/s of an even HEAD+GET mix, from the rate of each alone."""
    return 2 / (1 / get_rps + 1 / head_rps) if get_rps > 0 and head_rps > 0 else 0.0


def _measure(name: str, proc: subprocess.Popen[bytes], port: int, big: list[str], small: str, duration: float,
             connections: int) -> dict[str, Any]:
    base = f"http://127.0.0.1:{port}"
    cpu0 = tree_cpu_seconds(proc.pid)
    big_r = wrk(base, [("GET", p) for p in big], duration, connections)
    rss_big = tree_rss_mb(proc.pid)
    get_r = wrk(base, [("GET", small)], duration, connections)
    head_r = ab_head(base + small, duration, connections)
    small_r = {"requests_per_s": mix_rate(get_r["requests_per_s"], head_r["requests_per_s"]),
               "get_requests_per_s": get_r["requests_per_s"], "head_requests_per_s": head_r["requests_per_s"],
               "non_2xx": get_r["non_2xx"] + head_r["non_2xx"]}
    cpu = tree_cpu_seconds(proc.pid) - cpu0
    return {"server": name, "big": big_r, "small": small_r,
            "rss_mb": round(max(rss_big, tree_rss_mb(proc.pid)), 1), "server_cpu_s": round(cpu, 2)}


def _median(xs: list[float]) -> float:
    xs = sorted(xs)
    return xs[len(xs) // 2] if len(xs) % 2 else (xs[len(xs) // 2 - 1] + xs[len(xs) // 2]) / 2


def combine_rounds(name: str, rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """One server's figures over its rounds: the median of each rate (and of the server's CPU),
    the largest RSS, every non-2xx answer; the rounds themselves under ``rounds``."""
    big = {"requests_per_s": _median([r["big"]["requests_per_s"] for r in rounds]),
           "bytes_per_s": _median([r["big"]["bytes_per_s"] for r in rounds]),
           "non_2xx": sum(r["big"]["non_2xx"] for r in rounds)}
    small = {k: _median([r["small"][k] for r in rounds])
             for k in ("requests_per_s", "get_requests_per_s", "head_requests_per_s")}
    small["non_2xx"] = sum(r["small"]["non_2xx"] for r in rounds)
    return {"server": name, "big": big, "small": small, "rss_mb": max(r["rss_mb"] for r in rounds),
            "server_cpu_s": round(_median([r["server_cpu_s"] for r in rounds]), 2),
            "rounds": [{"big_mb_s": round(r["big"]["bytes_per_s"] / 1e6), "small_req_s": round(r["small"]["requests_per_s"]),
                        "server_cpu_s": r["server_cpu_s"]} for r in rounds]}


def run_serve(scale: float = 1.0, duration: float = 10, connections: int = 32, rounds: int = 1) -> dict[str, Any]:
    """nginx, ``modelcache serve`` and ``modelcache serve --workers <cores>`` on one cache, side by side.

    With ``rounds`` > 1 the servers take turns (nginx, modelcache, modelcache --workers, nginx, …),
    each started afresh for its turn, and each figure is the median of a server's rounds: a drift
    of the machine's speed during the scenario hits every server alike instead of whichever ran
    then."""
    SERVE_WORK.mkdir(parents=True, exist_ok=True)
    src = make_source(scale)
    cache, snapshot = import_cache(src)
    big = [f"/{SERVE_REPO}/resolve/main/{p.name}" for p in sorted(src.glob("*.safetensors"))]
    small = f"/{SERVE_REPO}/resolve/main/config.json"
    workers = os.cpu_count() or 1
    servers: list[tuple[str, Callable[[], tuple[subprocess.Popen[bytes], int]]]] = [
        ("nginx", lambda: start_nginx(snapshot)), ("modelcache", lambda: start_modelcache(cache))]
    if workers > 1:
        servers.append((f"modelcache --workers {workers}", lambda: start_modelcache(cache, workers)))
    measured: dict[str, list[dict[str, Any]]] = {name: [] for name, _ in servers}
    try:
        for rnd in range(max(1, rounds)):
            for name, starter in servers:
                proc, port = starter()
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}{small}") as r:  # same bytes from both
                        if r.read() != (src / "config.json").read_bytes():
                            raise RuntimeError(f"{name} on port {port} served other bytes for config.json")
                    print(f"   serve [{rnd + 1}/{max(1, rounds)}]: {name}: {duration:g} s big, {duration:g} s GET, "
                          f"{duration:g} s HEAD", flush=True)
                    m = _measure(name, proc, port, big, small, duration, connections)
                    measured[name].append(m)
                    print(f"      big {m['big']['bytes_per_s'] / 1e6:,.0f} MB/s, small {m['small']['requests_per_s']:,.0f} "
                          f"req/s, server CPU {m['server_cpu_s']} s", flush=True)
                finally:
                    proc.send_signal(signal.SIGQUIT if name == "nginx" else signal.SIGTERM)
                    try:
                        proc.wait(10)
                    except subprocess.TimeoutExpired:
                        proc.kill()
                        proc.wait()
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    results = [combine_rounds(name, rs) for name, rs in measured.items() if rs]
    return {"servers": results, "shard_bytes": (src / big[0].rsplit("/", 1)[1]).stat().st_size,
            "config_bytes": (src / "config.json").stat().st_size, "duration_s": duration,
            "connections": connections, "cores": os.cpu_count(), "rounds": max(1, rounds)}
