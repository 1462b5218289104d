"""How each tool is invoked, and how its output is verified.

Tools: the ``modelcache`` CLI (``-cN`` = ``--connections N``), ``huggingface_hub``'s
``snapshot_download`` (plain HTTP, Xet off), ``hf_transfer`` as huggingface_hub 0.x drove it
(threads, or ``x8 procs``), ``aria2c``, raw ``curl`` (scenario 3) and the ``curl ranges →
/dev/null`` ceiling (scenario 1). :func:`plan_tool` returns the command; :func:`verify` checks
every expected file (present, right size, sampled bytes equal to the source) so a failing tool is
never reported as fast.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable
from urllib.parse import quote

from .common import MODELCACHE, PY, KiB, MiB, clean_env
from .scenarios import CEILING, CEILING_RANGES, Scenario

__all__ = ["HF_ENV", "HF_TRANSFER_FILE_WORKERS", "HF_TRANSFER_SETTINGS", "ToolRun", "plan_tool", "url_for", "verify"]

HF_ENV = {"HF_HUB_DISABLE_XET": "1", "HF_HUB_DISABLE_TELEMETRY": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1"}

# huggingface_hub's last hf_transfer call (0.x http_get): max_files=HF_TRANSFER_CONCURRENCY (100),
# chunk_size=DOWNLOAD_CHUNK_SIZE (10 MiB), parallel_failures=3, max_retries=5; files 8 at a time
# (snapshot_download's max_workers=8).
HF_TRANSFER_SETTINGS = {"max_files": 100, "chunk_size": 10 * MiB, "parallel_failures": 3, "max_retries": 5}
HF_TRANSFER_FILE_WORKERS = 8

HF_SCRIPT = r"""
import sys
from huggingface_hub import snapshot_download
print(snapshot_download(sys.argv[1], endpoint=sys.argv[2], cache_dir=sys.argv[3]))
"""

HF_TRANSFER_SCRIPT = r"""
import json, os, sys
import hf_transfer
spec = json.load(open(sys.argv[1]))
def one(job):
    os.makedirs(os.path.dirname(job["filename"]), exist_ok=True)
    hf_transfer.download(url=job["url"], filename=job["filename"], **spec["settings"])
if spec["mode"] == "processes":
    from multiprocessing import get_context
    with get_context("fork").Pool(spec["workers"]) as pool:
        pool.map(one, spec["jobs"], chunksize=1)
else:
    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(spec["workers"]) as ex:
        for _ in ex.map(one, spec["jobs"]):
            pass
"""

SAMPLE = 64 * KiB


@dataclass
class ToolRun:
    """A planned tool run: the command, its environment, and where to find (or how to check) its output."""

    cmd: list[str]
    env: dict[str, str]
    files_root: Callable[[str], Path | None]  # stdout -> folder where the repo's files should be
    check: Callable[[str], str] | None = None  # instead of verifying files: stdout -> '' or a problem


def url_for(base: str, repo_id: str, path: str) -> str:
    """The ``resolve`` URL of ``path`` at ``main``."""
    return f"{base}/{repo_id}/resolve/main/{quote(path, safe='/')}"


def modelcache_cmd(base: str, cache_dir: Path, repo_id: str, connections: str | None = None) -> list[str]:
    """``modelcache download`` of ``repo_id`` from ``base`` into ``cache_dir`` (prints the snapshot)."""
    cmd = [MODELCACHE, "--cache-dir", str(cache_dir), "--endpoint", base]
    if connections:
        cmd += ["--connections", connections]
    return [*cmd, "download", repo_id, "--quiet"]


def plan_tool(tool: str, sc: Scenario, base: str, target: Path, expected: dict[str, int]) -> ToolRun:
    """The command that makes ``tool`` download ``sc``'s repo from ``base`` into ``target``."""
    paths = list(expected)

    def snapshot_from_stdout(out: str) -> Path | None:
        lines = [ln.strip() for ln in out.splitlines() if ln.strip()]
        if not lines:
            return None
        p = Path(lines[-1])
        try:
            p.resolve().relative_to(target.resolve())
        except ValueError:
            return None
        return p

    if tool.startswith("modelcache"):
        conns = tool.rsplit("-c", 1)[1] if "-c" in tool else None
        return ToolRun(modelcache_cmd(base, target, sc.repo_id, conns), clean_env(), snapshot_from_stdout)
    if tool == "huggingface_hub":
        cmd = [PY, "-c", HF_SCRIPT, sc.repo_id, base, str(target)]
        return ToolRun(cmd, clean_env(HF_ENV), snapshot_from_stdout)
    if tool.startswith("hf_transfer"):
        out = target / "files"
        spec = {"settings": HF_TRANSFER_SETTINGS, "workers": HF_TRANSFER_FILE_WORKERS,
                "mode": "processes" if "procs" in tool else "threads",
                "jobs": [{"url": url_for(base, sc.repo_id, p), "filename": str(out / p)} for p in paths]}
        spec_file = target / "hf_transfer.json"
        spec_file.write_text(json.dumps(spec))
        return ToolRun([PY, "-c", HF_TRANSFER_SCRIPT, str(spec_file)], clean_env(), lambda _o: out)
    if tool == "aria2c":
        out = target / "files"
        urls = target / "urls.txt"
        urls.write_text("".join(f"{url_for(base, sc.repo_id, p)}\n  out={p}\n" for p in paths))
        cmd = ["aria2c", "-x16", "-s16", f"-j{len(paths)}", "-i", str(urls), "-d", str(out),
               "--file-allocation=none", "--console-log-level=warn", "--summary-interval=0",
               "--allow-overwrite=true", "--auto-file-renaming=false"]
        return ToolRun(cmd, clean_env(), lambda _o: out)
    if tool == CEILING:
        return _ceiling(sc, base, target, expected)
    if tool.startswith("curl"):
        out = target / "files"
        for p in paths:
            (out / p).parent.mkdir(parents=True, exist_ok=True)
        pairs = " ".join(f"'{out / p}' '{url_for(base, sc.repo_id, p)}'" for p in paths)
        if "parallel" in tool:
            script = 'while [ $# -gt 0 ]; do curl -s -o "$1" "$2" & shift 2; done; wait'
        else:
            script = 'while [ $# -gt 0 ]; do curl -s -o "$1" "$2" || exit 1; shift 2; done'
        return ToolRun(["sh", "-c", f"set -- {pairs}; {script}"], clean_env(), lambda _o: out)
    raise ValueError(tool)


def _ceiling(sc: Scenario, base: str, target: Path, expected: dict[str, int]) -> ToolRun:
    lines = []
    for p, size in expected.items():
        k = CEILING_RANGES if size >= MiB else 1
        for i in range(k):
            a, b = size * i // k, size * (i + 1) // k - 1
            lines.append(f"curl -s -r {a}-{b} -o /dev/null -w '%{{size_download}}\\n' "
                         f"'{url_for(base, sc.repo_id, p)}' &")
    script = target / "ceiling.sh"
    script.write_text("\n".join(lines) + "\nwait\n")
    want = sum(expected.values())

    def check(out: str) -> str:
        got = sum(int(float(x)) for x in out.split() if x.strip())
        return "" if got == want else f"received {got} bytes, expected {want}"

    return ToolRun(["sh", str(script)], clean_env(), lambda _o: None, check)


def verify(files_root: Path | None, source_root: Path, expected: dict[str, int]) -> str:
    """'' when every expected file is there with the right size and sampled bytes; else why not."""
    if files_root is None or not files_root.is_dir():
        return f"no output folder ({files_root})"
    for rel, size in expected.items():
        p = files_root / rel
        try:
            st = p.stat()  # follows the snapshot symlink
        except OSError:
            return f"missing {rel}"
        if st.st_size != size:
            return f"{rel}: size {st.st_size} != {size}"
        offsets = sorted({0, max(0, size // 2 - SAMPLE // 2), max(0, size - SAMPLE)})
        with open(p, "rb") as got, open(source_root / rel, "rb") as want:
            for off in offsets:
                got.seek(off)
                want.seek(off)
                if got.read(SAMPLE) != want.read(SAMPLE):
                    return f"{rel}: bytes at offset {off} differ from the source"
    return ""
