"""A cold read-through mirror asked by many clients at once (issue #16's last row).

An upstream (``benchmarks/upstream.py``, scenario 4's repo and caps) holds a model; first one
``modelcache download`` straight from it is timed (the reference wall). Then, twice, a fresh
``modelcache serve --upstream`` starts on an empty cache and ``clients`` clients ask it for the
model at once, each into its own folder; the figure is the time until the last one is done:

- ``modelcache`` round (the target): ``modelcache download`` clients, verifying what they get;
- ``curl`` round (for information): one ``curl -Z`` per client over the ``resolve`` URLs — cheap
  clients, so on a small box the figure shows the mirror's fan-out rather than the clients' CPU;
- ``curl → /dev/null`` round (for information): the same clients throwing the bytes away (each
  client's byte count checked): no client disk writes either, the closest this one box comes to
  a cluster, where every client has its own node and only the mirror's fan-out is shared.

Every client's files are verified, and the bytes the upstream sent are counted: a mirror that
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
from .peers import modelcache_cmd, url_for, verify
from .scenarios import MIRROR, Scenario
from .serving import _free_port, _wait_port

__all__ = ["run_mirror"]

CLIENT_KINDS = ("modelcache", "curl", "curl → /dev/null")
DISCARD = "curl → /dev/null"


def _snapshot(stdout: str) -> Path | None:
    lines = [ln.strip() for ln in stdout.splitlines() if ln.strip()]
    return Path(lines[-1]) if lines else None


def _client(kind: str, mirror_url: str, folder: Path, sc: Scenario, expected: dict[str, int]) -> list[str]:
    if kind == "modelcache":
        return modelcache_cmd(mirror_url, folder, sc.repo_id)
    cmd = ["curl", "-s", "-f", "-Z", "--parallel-max", "8", "--create-dirs"]
    if kind == DISCARD:
        cmd += ["-w", "%{size_download}\\n"]
    for p in expected:
        cmd += ["-o", "/dev/null" if kind == DISCARD else str(folder / p), url_for(mirror_url, sc.repo_id, p)]
    return cmd


def _byte_count(stdout: str, expected: dict[str, int]) -> str:
    """'' when a discarding client received every byte of the model, else why not."""
    got = sum(int(float(x)) for x in stdout.split() if x.strip())
    want = sum(expected.values())
    return "" if got == want else f"received {got} bytes, expected {want}"


def _stop(proc: subprocess.Popen[Any]) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def cold_round(kind: str, upstream_url: str, sc: Scenario, expected: dict[str, int], clients: int,
               timeout: float) -> dict[str, Any]:
    """A fresh mirror on an empty cache; ``clients`` clients of ``kind`` at once; timed and verified."""
    slug = {"modelcache": "modelcache", "curl": "curl", DISCARD: "curl-discard"}[kind]
    work = TARGETS / f"mirror-{slug}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    port = _free_port()
    with open(WORK / "logs" / f"mirror-serve-{slug}.log", "w") as fh:  # a file: a full pipe never blocks it
        mirror = subprocess.Popen([MODELCACHE, "--cache-dir", str(work / "mirror-cache"), "serve", "--port", str(port),
                                   "--upstream", upstream_url], env=clean_env(), stdout=subprocess.DEVNULL, stderr=fh)
    out: dict[str, Any] = {"client": kind, "ok": False}
    try:
        _wait_port(port, mirror)
        mirror_url = f"http://127.0.0.1:{port}"
        sync()
        cpu0 = tree_cpu_seconds(mirror.pid)
        kids0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.monotonic()
        folders = [work / f"client-{i:02d}" for i in range(clients)]
        procs = [subprocess.Popen(_client(kind, mirror_url, f, sc, expected), env=clean_env(),
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for f in folders]
        results = []
        for p in procs:
            try:
                stdout, stderr = p.communicate(timeout=max(1.0, timeout - (time.monotonic() - t0)))
            except subprocess.TimeoutExpired:
                p.kill()
                stdout, stderr = p.communicate()
            results.append((p.returncode, stdout, stderr))
        out["last_done_s"] = time.monotonic() - t0
        out["mirror_cpu_s"] = round(tree_cpu_seconds(mirror.pid) - cpu0, 2)
        kids = resource.getrusage(resource.RUSAGE_CHILDREN)
        out["clients_cpu_s"] = round(kids.ru_utime + kids.ru_stime - kids0.ru_utime - kids0.ru_stime, 2)
        problems = []
        for i, (rc, stdout, stderr) in enumerate(results):
            last = (stderr.strip().splitlines() or [""])[-1]
            files = _snapshot(stdout) if kind == "modelcache" else folders[i]
            if rc:
                why = f"exit {rc}: {last}"[:300]
            elif kind == DISCARD:
                why = _byte_count(stdout, expected)
            else:
                why = verify(files, sc.root, expected)
            if why:
                problems.append(f"client {i}: {why}")
        out["failed_clients"] = len(problems)
        out["ok"] = not problems
        if problems:
            out["error"] = "; ".join(problems[:3])
    finally:
        _stop(mirror)
        shutil.rmtree(work, ignore_errors=True)
    return out


def run_mirror(base_sc: Scenario, clients: int = 16, timeout: float = 300) -> dict[str, Any]:
    """Direct download vs ``clients`` concurrent clients through a cold mirror of ``base_sc``'s repo.

    The top-level keys (``direct_wall_s``, ``last_done_s``, ``ok``…) are the modelcache round's;
    ``rounds`` holds every round.
    """
    import upstream as up  # benchmarks/upstream.py (on sys.path via run.py)

    sc = Scenario(MIRROR, "cold mirror", base_sc.repo_id, base_sc.files, base_sc.text_files,
                  base_sc.per_conn_bps, base_sc.aggregate_bps, base_sc.latency_ms, ["modelcache"], "",
                  scale=base_sc.scale)
    sc.root = base_sc.root
    up.generate_repo(sc.root, sc.files, text_files=sc.text_files)
    (WORK / "logs").mkdir(parents=True, exist_ok=True)
    up_log = WORK / "logs" / "mirror-upstream.log"
    with open(up_log, "w") as fh:
        proc, ready = up.start_subprocess(sc.root, sc.repo_id, per_conn_bps=sc.per_conn_bps,
                                          aggregate_bps=sc.aggregate_bps, latency_ms=sc.latency_ms,
                                          stderr=fh.fileno())
    expected = {p: f.size for p, f in up.Repo(sc.root, sc.repo_id).files.items()}
    base = str(ready["url"])
    out: dict[str, Any] = {"clients": clients, "bytes": sc.total_bytes, "ok": False, "cores": os.cpu_count(),
                           "rounds": []}
    try:
        direct = run_tool("modelcache", sc, base, int(ready["pid"]), expected, timeout)
        out["direct_wall_s"] = direct.wall if direct.ok else None
        out["direct_cpu_s"] = direct.cpu
        if not direct.ok:
            out["error"] = f"direct download failed: {direct.error}"
            return out
        for kind in CLIENT_KINDS:
            if kind != "modelcache" and shutil.which("curl") is None:
                continue
            r = cold_round(kind, base, sc, expected, clients, timeout)
            out["rounds"].append(r)
            if kind == "modelcache":
                out.update({k: r[k] for k in ("ok", "last_done_s", "mirror_cpu_s", "clients_cpu_s", "failed_clients",
                                              "error") if k in r})
    finally:
        proc.terminate()
        try:
            proc.wait(10)
            stats = json.loads(up_log.read_text().strip().splitlines()[-1])
            # the direct download's bytes are in the count too: one copy of the repo
            rounds = max(1, len(out["rounds"]))
            out["upstream_bytes_per_round"] = (int(stats["bytes_sent"]) - sc.total_bytes) // rounds
        except (subprocess.TimeoutExpired, ValueError, IndexError, KeyError):
            proc.kill()
            proc.wait()
    return out
