"""The bench machine: installing the peers, machine facts, and modelcache's source fingerprint."""

from __future__ import annotations

import datetime as _dt
import hashlib
import os
import platform
import shutil
import subprocess
from pathlib import Path

from .common import MODELCACHE, PY, REPO_ROOT, TIME, WORK, GiB, KiB, modelcache_defaults

__all__ = ["ensure_deps", "git_state", "have", "machine_info", "source_fingerprint"]

# executable -> Debian package
APT_TOOLS = {"aria2c": "aria2", "wrk": "wrk", "ab": "apache2-utils", "nginx": "nginx-light", "curl": "curl"}


def have(tool: str) -> bool:
    """Whether ``tool`` is on PATH (or in /usr/sbin, where Debian puts nginx)."""
    return shutil.which(tool) is not None or Path(f"/usr/sbin/{tool}").exists()


def _apt_install(pkgs: list[str]) -> None:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    r = subprocess.run(["apt-get", "install", "-y", "-q", *pkgs], capture_output=True, text=True, env=env)
    if r.returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], capture_output=True, env=env)
        subprocess.run(["apt-get", "install", "-y", "-q", *pkgs], capture_output=True, env=env)


def ensure_deps(install: bool) -> list[str]:
    """Install what is missing (modelcache, huggingface_hub, hf_transfer; aria2, wrk, ab, nginx with apt).

    Returns notes for the report about tools that are still missing (their rows are skipped).
    """
    notes: list[str] = []
    if not Path(MODELCACHE).exists():
        if not install:
            raise SystemExit(f"{MODELCACHE} is missing: make install")
        print("installing modelcache (editable) into the venv", flush=True)
        subprocess.run([PY, "-m", "pip", "install", "--quiet", "-e", str(REPO_ROOT)], check=True)
    need = [m for m in ("huggingface_hub", "hf_transfer")
            if subprocess.run([PY, "-c", f"import {m}"], capture_output=True).returncode != 0]
    if need and install:
        print(f"installing {need} into {Path(PY).parent.parent}", flush=True)
        subprocess.run([PY, "-m", "pip", "install", "--quiet", *need], check=False)
    missing = [t for t in APT_TOOLS if not have(t)]
    if missing and install:
        print(f"installing {[APT_TOOLS[t] for t in missing]} (apt-get)", flush=True)
        _apt_install([APT_TOOLS[t] for t in missing])
    for t in APT_TOOLS:
        if not have(t):
            notes.append(f"{t} is not installed: its rows are skipped")
    if not Path(TIME).exists():
        raise SystemExit(f"{TIME} (GNU time) is required: apt-get install -y time")
    return notes


def _out(cmd: list[str]) -> str:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return ""


def source_fingerprint() -> str:
    """sha1 over modelcache's source files: a change during the run makes the results mixed."""
    h = hashlib.sha1()
    for f in sorted((REPO_ROOT / "src").rglob("*.py")):
        h.update(str(f.relative_to(REPO_ROOT)).encode())
        try:
            h.update(f.read_bytes())
        except OSError:
            pass
    return h.hexdigest()[:12]


def git_state() -> str:
    """``<short HEAD>`` (+ a note when src/ has uncommitted changes)."""
    head = _out(["git", "-C", str(REPO_ROOT), "rev-parse", "--short", "HEAD"])
    dirty = _out(["git", "-C", str(REPO_ROOT), "status", "--porcelain", "--", "src"])
    return f"{head}{' + uncommitted changes in src/' if dirty else ''}" if head else "unknown"


def machine_info() -> dict[str, object]:
    """Facts for the report's Machine section."""
    mem_kib = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            mem_kib = int(line.split()[1])
    cpu = ""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break

    def pyver(mod: str) -> str:
        return _out([PY, "-c", f"import importlib.metadata as m; print(m.version('{mod}'))"]) or "not installed"

    def first_line(cmd: list[str]) -> str:
        return (_out(cmd).splitlines() or ["not installed"])[0]

    df = _out(["df", "-hT", str(WORK)]).splitlines()
    nginx = subprocess.run(["nginx", "-v"], capture_output=True, text=True).stderr.strip() if have("nginx") else ""
    defaults = modelcache_defaults()
    return {
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "memory_gib": round(mem_kib / GiB * KiB, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "filesystem": df[-1] if df else "",
        "versions": {
            "modelcache": _out([MODELCACHE, "--version"]).rsplit(" ", 1)[-1],
            "huggingface_hub": pyver("huggingface_hub"),
            "hf_transfer": pyver("hf_transfer"),
            "httpx": pyver("httpx"),
            "aria2c": first_line(["aria2c", "--version"]).rsplit(" ", 1)[-1],
            "curl": " ".join(first_line(["curl", "--version"]).split()[1:2]),
            "wrk": first_line(["wrk", "-v"]).split(" [")[0].replace("wrk ", "") if have("wrk") else "not installed",
            "nginx": nginx.rsplit("/", 1)[-1] or "not installed",
            "ab": first_line(["ab", "-V"]).split("Version ")[-1].split(" ")[0] if have("ab") else "not installed",
        },
        "loadavg_start": [round(x, 2) for x in os.getloadavg()],
        "modelcache_git": git_state(),
        "modelcache_src_sha1": source_fingerprint(),
        "modelcache_default_connections": defaults["connections"],
        "modelcache_default_chunk_size": defaults["chunk_size"],
    }
