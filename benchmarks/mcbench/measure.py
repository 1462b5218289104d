"""Running one tool and measuring it: wall, CPU, peak RSS, upstream CPU, interference.

Each tool runs as a subprocess under ``/usr/bin/time -f '%e %U %S %M'`` in a fresh empty folder;
CPU used meanwhile by the upstream, by kernel threads and by every other process is recorded so
a noisy run can be spotted (and retried by the caller). Also here: the machine's sha256 cost,
the yardstick of the CPU-per-verified-GB target.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import statistics
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from .common import TARGETS, TIME, WORK, MiB
from .peers import plan_tool, verify
from .scenarios import Scenario

__all__ = [
    "Run", "children", "kernel_threads_delta", "kernel_threads_ticks", "proc_cpu_seconds", "run_tool",
    "sha256_cpu_per_gb", "summarize", "sync", "system_busy_seconds", "tree_cpu_seconds", "tree_rss_mb", "warm",
]

_TICK = os.sysconf("SC_CLK_TCK")


def proc_cpu_seconds(pid: int) -> float:
    """user+sys CPU seconds of one process so far (0 when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _TICK
    except (OSError, IndexError, ValueError):
        return 0.0


def children(pid: int) -> list[int]:
    """Direct children of ``pid``."""
    try:
        return [int(x) for x in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds of ``pid`` and its direct children (a server and its workers)."""
    return sum(proc_cpu_seconds(p) for p in [pid, *children(pid)])


def tree_rss_mb(pid: int) -> float:
    """Resident set of ``pid`` and its direct children, MiB."""
    total = 0
    for p in [pid, *children(pid)]:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024


def system_busy_seconds() -> float:
    """CPU seconds the machine (all cores) spent in processes (user+nice+system) since boot.

    irq/softirq time is left out: loopback traffic is processed in softirq, which belongs to the
    transfer being measured, not to interference.
    """
    vals = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return (vals[0] + vals[1] + vals[2]) / _TICK


def kernel_threads_ticks() -> dict[int, int]:
    """CPU ticks used so far by each kernel thread (writeback, jbd2, kworkers...)."""
    out: dict[int, int] = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            f = Path(f"/proc/{d}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(f[6]) & 0x00200000:  # PF_KTHREAD
            out[int(d)] = int(f[11]) + int(f[12])
    return out


def kernel_threads_delta(before: dict[int, int]) -> float:
    """CPU seconds kernel threads used since ``before``."""
    after = kernel_threads_ticks()
    ticks = sum(max(0, t - before.get(pid, 0)) for pid, t in after.items())
    return ticks / _TICK


def sync() -> float:
    """``sync``; returns the seconds it took."""
    t = time.monotonic()
    os.sync()
    return time.monotonic() - t


def sha256_cpu_per_gb(total: int = 256 * MiB, repeat: int = 3) -> float:
    """CPU seconds this machine's ``hashlib.sha256`` takes per GB (10^9 bytes), best of ``repeat``.

    Hashes an in-memory buffer in 4 MiB updates: the cost of verifying, without I/O.
    """
    block = os.urandom(4 * MiB)
    best = float("inf")
    for _ in range(repeat):
        h = hashlib.sha256()
        c0 = time.process_time()
        for _ in range(max(1, total // len(block))):
            h.update(block)
        best = min(best, time.process_time() - c0)
    hashed = max(1, total // len(block)) * len(block)
    return best / hashed * 1e9


@dataclass
class Run:
    """One run of one tool."""

    tool: str
    ok: bool
    error: str = ""
    wall: float = 0.0
    user: float = 0.0
    sys: float = 0.0
    rss_kib: int = 0
    sync_s: float = 0.0
    upstream_cpu: float = 0.0
    other_cpu: float = 0.0
    kernel_cpu: float = 0.0
    exit_code: int = 0
    bytes: int = 0

    @property
    def cpu(self) -> float:
        return self.user + self.sys


def run_tool(tool: str, sc: Scenario, base: str, up_pid: int, expected: dict[str, int], timeout: float) -> Run:
    """Run ``tool`` once on scenario ``sc`` against the upstream at ``base``; measured and verified."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", tool).strip("_")
    target = TARGETS / f"s{sc.num}-{slug}"
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    plan = plan_tool(tool, sc, base, target, expected)
    timefile = target.parent / f"{target.name}.time"
    sync()
    time.sleep(0.2)
    u0, b0, k0 = proc_cpu_seconds(up_pid), system_busy_seconds(), kernel_threads_ticks()
    t0 = time.monotonic()
    try:
        p = subprocess.run([TIME, "-f", "%e %U %S %M", "-o", str(timefile), *plan.cmd], env=plan.env,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=timeout,
                           cwd=str(target))
        stdout, stderr, rc = p.stdout, p.stderr, p.returncode
    except subprocess.TimeoutExpired as exc:
        stdout = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        stderr, rc = f"timed out after {timeout:.0f} s", -1
    wall_mono = time.monotonic() - t0
    up_cpu = proc_cpu_seconds(up_pid) - u0
    busy = system_busy_seconds() - b0
    kthreads = kernel_threads_delta(k0)
    sync_s = sync()
    run = Run(tool, ok=False, exit_code=rc, sync_s=sync_s, upstream_cpu=up_cpu, bytes=sc.total_bytes)
    try:
        last = timefile.read_text().strip().splitlines()[-1].split()
        run.wall, run.user, run.sys, run.rss_kib = float(last[0]), float(last[1]), float(last[2]), int(last[3])
    except (OSError, IndexError, ValueError):
        run.wall = wall_mono
    run.kernel_cpu = kthreads
    run.other_cpu = max(0.0, busy - run.cpu - up_cpu - kthreads)
    why = ""
    if rc != 0:
        tail = " | ".join((stderr or "").strip().splitlines()[-3:])
        why = f"exit {rc}: {tail}"[:400]
    problem = plan.check(stdout) if plan.check else verify(plan.files_root(stdout), sc.root, expected)
    if problem:
        why = f"{why}; {problem}" if why else problem
        if rc == 0:
            tail = " | ".join((stderr or "").strip().splitlines()[-3:])
            if tail:
                why += f" (stderr: {tail[:300]})"
    run.ok, run.error = not why, why
    if why:
        (WORK / "logs").mkdir(parents=True, exist_ok=True)
        (WORK / "logs" / f"s{sc.num}-{slug}.log").write_text(
            f"cmd: {plan.cmd}\nrc: {rc}\n--- stdout\n{stdout}\n--- stderr\n{stderr}\n")
    shutil.rmtree(target, ignore_errors=True)
    timefile.unlink(missing_ok=True)
    sync()
    return run


def warm(root: Path) -> None:
    """Read the source repo once so every tool is served from the page cache."""
    for dirpath, _d, names in os.walk(root):
        for n in names:
            with open(Path(dirpath) / n, "rb", buffering=0) as f:
                while f.read(8 * MiB):
                    pass


def summarize(runs: list[Run]) -> dict[str, object]:
    """Medians over the successful runs of one tool (peak RSS: the max); failures listed."""
    ok = [r for r in runs if r.ok]

    def med(xs: list[float]) -> float | None:
        return statistics.median(xs) if xs else None

    s: dict[str, object] = {"runs": len(runs), "ok_runs": len(ok), "ok": len(ok) == len(runs) and bool(runs),
                            "errors": [r.error for r in runs if not r.ok]}
    if ok:
        s.update({
            "wall_s": med([r.wall for r in ok]),
            "wall_plus_sync_s": med([r.wall + r.sync_s for r in ok]),
            "cpu_s": med([r.cpu for r in ok]),
            "user_s": med([r.user for r in ok]),
            "sys_s": med([r.sys for r in ok]),
            "peak_rss_kib": max(r.rss_kib for r in ok),
            "throughput_bps": med([r.bytes / r.wall for r in ok if r.wall > 0]),
            "upstream_cpu_s": med([r.upstream_cpu for r in ok]),
            "other_cpu_s": med([r.other_cpu for r in ok]),
            "kernel_threads_cpu_s": med([r.kernel_cpu for r in ok]),
            "all_walls_s": [round(r.wall, 3) for r in ok],
        })
    return s


