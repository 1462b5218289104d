#!/usr/bin/env python3
"""Serving speed: `modelcache serve` against nginx serving the same files, 32 concurrent clients.

Both servers serve one cache imported from the same random files: modelcache through its
HF-compatible `resolve` route, nginx with `sendfile` from the snapshot folder (a regex
`location` mapping the same URLs to the same files). The load is `wrk -t2 -c32`:

- big files: a Lua script rotates over the shards, so the 32 connections stream whole shards;
  the figure is bytes/s;
- small files: `config.json` over and over; the figure is requests/s.

Everything runs on this machine (2 cores): wrk's own CPU competes with the server's, the same
way for both. Results: ``benchmarks/RESULTS-serve.md`` and ``results-serve.json``.

    python benchmarks/serve_bench.py [--scale 1.0] [--duration 10] [--connections 32]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
WORK = HERE / "_work" / "serve"
REPO = "bench/serve"
MiB = 1024 * 1024


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ensure_tools() -> None:
    missing = [t for t in ("nginx", "wrk") if shutil.which(t) is None and not Path(f"/usr/sbin/{t}").exists()]
    if missing:
        pkgs = ["nginx-light" if t == "nginx" else t for t in missing]
        subprocess.run(["apt-get", "install", "-y", "-q", *pkgs], check=False, capture_output=True)
        if any(shutil.which(t) is None and not Path(f"/usr/sbin/{t}").exists() for t in missing):
            subprocess.run(["apt-get", "update", "-q"], check=False, capture_output=True)
            subprocess.run(["apt-get", "install", "-y", "-q", *pkgs], check=True)


def make_source(scale: float) -> Path:
    src = WORK / f"src-{scale}"
    shards, size = 4, max(MiB, int(256 * MiB * scale))
    marker = src / ".done"
    if marker.exists():
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
    marker.write_text("ok")
    return src


def import_cache(src: Path) -> tuple[Path, Path]:
    cache = WORK / "cache"
    shutil.rmtree(cache, ignore_errors=True)
    out = subprocess.run([sys.executable, "-m", "modelcache", "--cache-dir", str(cache), "import", str(src),
                          "--repo", REPO], check=True, capture_output=True, text=True)
    return cache, Path(out.stdout.strip().splitlines()[-1])


def wait_port(port: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


def start_modelcache(cache: Path, workers: int = 1) -> tuple[subprocess.Popen, int]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    proc = subprocess.Popen([sys.executable, "-m", "modelcache", "--cache-dir", str(cache), "serve",
                             "--port", str(port), "--workers", str(workers)], env=env, stderr=subprocess.DEVNULL)
    if workers > 1:
        time.sleep(2)  # every worker up before the load starts
    wait_port(port)
    return proc, port


def start_nginx(snapshot: Path) -> tuple[subprocess.Popen, int, Path]:
    port = free_port()
    conf_dir = WORK / "nginx"
    shutil.rmtree(conf_dir, ignore_errors=True)
    (conf_dir / "tmp").mkdir(parents=True)
    conf = conf_dir / "nginx.conf"
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
    client_body_temp_path {conf_dir}/tmp;
    proxy_temp_path {conf_dir}/tmp;
    fastcgi_temp_path {conf_dir}/tmp;
    uwsgi_temp_path {conf_dir}/tmp;
    scgi_temp_path {conf_dir}/tmp;
    default_type application/octet-stream;
    server {{
        listen 127.0.0.1:{port};
        location ~ ^/{REPO}/resolve/[^/]+/(.+)$ {{ alias {snapshot}/$1; }}
    }}
}}
""")
    proc = subprocess.Popen(["nginx", "-c", str(conf), "-p", str(conf_dir)], stderr=subprocess.DEVNULL)
    wait_port(port)
    return proc, port, conf_dir


def rss_mb(pid: int) -> float:
    total = 0
    for p in [pid, *_children(pid)]:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024


def _children(pid: int) -> list[int]:
    try:
        return [int(x) for x in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3}


def wrk(url_base: str, paths: list[str], duration: int, connections: int) -> dict[str, float]:
    script = WORK / "rotate.lua"
    items = ", ".join(f'"{p}"' for p in paths)
    script.write_text(f"""
local paths = {{{items}}}
local i = 0
request = function()
  i = i % #paths + 1
  return wrk.format("GET", paths[i])
end
""")
    out = subprocess.run(["wrk", "-t2", f"-c{connections}", f"-d{duration}s", "--timeout", "60s", "-s", str(script),
                          url_base], capture_output=True, text=True, check=True).stdout
    req = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    m = re.search(r"Transfer/sec:\s+([\d.]+)([KMG]?)B", out)
    bps = float(m.group(1)) * _UNITS[m.group(2)]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"requests_per_s": req, "bytes_per_s": bps, "non_2xx": int(errors.group(1)) if errors else 0}


def measure(name: str, proc: subprocess.Popen, port: int, big: list[str], small: list[str], duration: int,
            connections: int) -> dict[str, object]:
    base = f"http://127.0.0.1:{port}"
    cpu0 = _cpu(proc.pid)
    big_r = wrk(base, big, duration, connections)
    rss_big = rss_mb(proc.pid)
    small_r = wrk(base, small, duration, connections)
    cpu = _cpu(proc.pid) - cpu0
    return {"server": name, "big": big_r, "small": small_r, "rss_mb": round(max(rss_big, rss_mb(proc.pid)), 1),
            "server_cpu_s": round(cpu, 2)}


def _cpu(pid: int) -> float:
    total = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    for p in [pid, *_children(pid)]:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
        except OSError:
            pass
    return total


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scale", type=float, default=1.0, help="shard size = 256 MiB × scale")
    ap.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    ap.add_argument("--connections", type=int, default=32)
    args = ap.parse_args(argv)
    ensure_tools()
    WORK.mkdir(parents=True, exist_ok=True)
    src = make_source(args.scale)
    cache, snapshot = import_cache(src)
    big = [f"/{REPO}/resolve/main/{p.name}" for p in sorted(src.glob("*.safetensors"))]
    small = [f"/{REPO}/resolve/main/config.json"]
    results = []
    workers = os.cpu_count() or 1
    servers = (("nginx", lambda: start_nginx(snapshot)[:2]), ("modelcache", lambda: start_modelcache(cache)),
               (f"modelcache --workers {workers}", lambda: start_modelcache(cache, workers)))
    for name, starter in servers:
        proc, port = starter()
        try:
            # sanity: both serve the same bytes
            import urllib.request

            with urllib.request.urlopen(f"http://127.0.0.1:{port}{small[0]}") as r:
                assert r.read() == (src / "config.json").read_bytes()
            results.append(measure(name, proc, port, big, small, args.duration, args.connections))
        finally:
            proc.send_signal(signal.SIGQUIT if name == "nginx" else signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
    nginx, mc = results[0], max(results[1:], key=lambda r: r["big"]["bytes_per_s"])
    ratio_big = mc["big"]["bytes_per_s"] / nginx["big"]["bytes_per_s"]
    ratio_small = mc["small"]["requests_per_s"] / nginx["small"]["requests_per_s"]
    shard = (src / big[0].rsplit("/", 1)[1]).stat().st_size
    lines = [
        "# Serving benchmark: `modelcache serve` vs nginx",
        "",
        f"Generated by `make bench` (`benchmarks/serve_bench.py`) on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; "
        f"{os.cpu_count()} cores; load average at the end {os.getloadavg()[0]:.2f}.",
        "",
        f"- Files: 4 shards × {shard / MiB:.0f} MiB and a {len((src / 'config.json').read_bytes())}-byte config.json, "
        "one cache; modelcache through its `resolve` route, nginx (`sendfile on`, `worker_processes auto`) "
        "aliasing the same URLs to the snapshot folder.",
        f"- Load: `wrk -t2 -c{args.connections} -d{args.duration}s` on this machine (its CPU competes with the "
        "server's, equally for both): big = the shards in rotation (bytes/s), small = config.json (requests/s).",
        "",
        "| server | big files MB/s | small files req/s | server CPU s | peak RSS MB | non-2xx |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(f"| {r['server']} | {r['big']['bytes_per_s'] / 1e6:.0f} | {r['small']['requests_per_s']:.0f} | "
                     f"{r['server_cpu_s']} | {r['rss_mb']} | {r['big']['non_2xx'] + r['small']['non_2xx']} |")
    verdict = "met" if ratio_big >= 0.8 else "missed"
    lines += [
        "",
        f"- {mc['server']} / nginx, big files (throughput): **{ratio_big:.2f}** (target ≥ 0.8: **{verdict}**)",
        f"- {mc['server']} / nginx, small files (requests/s): **{ratio_small:.2f}**",
        "",
    ]
    (HERE / "RESULTS-serve.md").write_text("\n".join(lines))
    (HERE / "results-serve.json").write_text(json.dumps({"results": results, "ratio_big": ratio_big,
                                                         "ratio_small": ratio_small}, indent=1))
    print("\n".join(lines))
    shutil.rmtree(cache, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
