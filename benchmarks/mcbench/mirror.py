"""A cold read-through mirror asked by many clients at once (issue #16's last row).

An upstream (``benchmarks/upstream.py``, scenario 4's repo and caps) holds a model; first one
``modelcache download`` straight from it is timed (the reference wall). Then ``modelcache serve
--upstream`` starts on an empty cache and ``clients`` ``modelcache download`` processes ask it for
the model at once, each into its own cache; the figure is the time until the last one is done.
Every client's snapshot is verified, and the bytes the upstream sent are counted: a mirror that
fetched the model once per client would show it there.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

from .common import MODELCACHE, TARGETS, WORK, clean_env
from .measure import run_tool, sync, tree_cpu_seconds
from .peers import modelcache_cmd, verify
from .scenarios import MIRROR, Scenario
from .serving import _free_port, _wait_port

__all__ = ["run_mirror"]


def _snapshot(stdout: str) -> Path | None:
    lines = [ln.strip() for ln in stdout.splitlines() if ln.strip()]
    return Path(lines[-1]) if lines else None


def run_mirror(base_sc: Scenario, clients: int = 16, timeout: float = 300) -> dict[str, Any]:
    """Direct download vs ``clients`` concurrent downloads through a cold mirror of ``base_sc``'s repo."""
    import upstream as up  # benchmarks/upstream.py (on sys.path via run.py)

    sc = Scenario(MIRROR, "cold mirror", base_sc.repo_id, base_sc.files, base_sc.text_files,
                  base_sc.per_conn_bps, base_sc.aggregate_bps, base_sc.latency_ms, ["modelcache"], "",
                  scale=base_sc.scale)
    sc.root = base_sc.root
    up.generate_repo(sc.root, sc.files, text_files=sc.text_files)
    (WORK / "logs").mkdir(parents=True, exist_ok=True)
    up_log, mirror_log = WORK / "logs" / "mirror-upstream.log", WORK / "logs" / "mirror-serve.log"
    with open(up_log, "w") as fh:  # a file, not a pipe: a chatty process never blocks on a full pipe
        proc, ready = up.start_subprocess(sc.root, sc.repo_id, per_conn_bps=sc.per_conn_bps,
                                          aggregate_bps=sc.aggregate_bps, latency_ms=sc.latency_ms,
                                          stderr=fh.fileno())
    expected = {p: f.size for p, f in up.Repo(sc.root, sc.repo_id).files.items()}
    base = str(ready["url"])
    out: dict[str, Any] = {"clients": clients, "bytes": sc.total_bytes, "ok": False, "cores": os.cpu_count()}
    mirror_proc = None
    work = TARGETS / "mirror"
    try:
        direct = run_tool("modelcache", sc, base, int(ready["pid"]), expected, timeout)
        out["direct_wall_s"] = direct.wall if direct.ok else None
        out["direct_cpu_s"] = direct.cpu
        if not direct.ok:
            out["error"] = f"direct download failed: {direct.error}"
            return out
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        port = _free_port()
        with open(mirror_log, "w") as fh:
            mirror_proc = subprocess.Popen(
                [MODELCACHE, "--cache-dir", str(work / "mirror-cache"), "serve", "--port", str(port),
                 "--upstream", base], env=clean_env(), stdout=subprocess.DEVNULL, stderr=fh)
        _wait_port(port, mirror_proc)
        mirror_url = f"http://127.0.0.1:{port}"
        sync()
        cpu0 = tree_cpu_seconds(mirror_proc.pid)
        kids0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.monotonic()
        procs = [subprocess.Popen(modelcache_cmd(mirror_url, work / f"client-{i:02d}", sc.repo_id), env=clean_env(),
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for i in range(clients)]
        results = []
        for p in procs:
            try:
                stdout, stderr = p.communicate(timeout=max(1.0, timeout - (time.monotonic() - t0)))
            except subprocess.TimeoutExpired:
                p.kill()
                stdout, stderr = p.communicate()
            results.append((p.returncode, stdout, stderr))
        out["last_done_s"] = time.monotonic() - t0
        out["mirror_cpu_s"] = round(tree_cpu_seconds(mirror_proc.pid) - cpu0, 2)
        kids = resource.getrusage(resource.RUSAGE_CHILDREN)
        out["clients_cpu_s"] = round(kids.ru_utime + kids.ru_stime - kids0.ru_utime - kids0.ru_stime, 2)
        problems = []
        for i, (rc, stdout, stderr) in enumerate(results):
            last = (stderr.strip().splitlines() or [""])[-1]
            why = f"exit {rc}: {last}"[:300] if rc else verify(_snapshot(stdout), sc.root, expected)
            if why:
                problems.append(f"client {i}: {why}")
        out["failed_clients"] = len(problems)
        out["ok"] = not problems
        if problems:
            out["error"] = "; ".join(problems[:3])
    finally:
        if mirror_proc is not None:
            mirror_proc.terminate()
            try:
                mirror_proc.wait(10)
            except subprocess.TimeoutExpired:
                mirror_proc.kill()
                mirror_proc.wait()
        proc.terminate()
        try:
            proc.wait(10)
            stats = json.loads(up_log.read_text().strip().splitlines()[-1])
            # the direct download's bytes are in the count too: subtract one copy of the repo
            out["upstream_bytes_for_mirror"] = int(stats["bytes_sent"]) - sc.total_bytes
        except (subprocess.TimeoutExpired, ValueError, IndexError, KeyError):
            proc.kill()
        shutil.rmtree(work, ignore_errors=True)
    return out


