"""Kill at every syscall that changes the cache: a download is SIGKILLed at the n-th call of
``os.replace``/``os.rename``/``os.link``/``os.symlink``/``os.fsync``/``tempfile.mkstemp``
(before it, and right after it), for every n of a small model's download. After each kill:
``check`` never says ready on a partial, no partial file is visible in ``snapshots/``,
``huggingface_hub.scan_cache_dir()`` has no warning (see below), and the rerun completes,
fetching at most 1.1x the model plus a few MiB over both runs.

A driver subprocess (no threads, so ``fork`` is safe) forks one child per run; the upstream
is a fault server in this process, so bytes are counted per n.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

from helpers.fault_server import Repo
from rel_helpers import blob_bytes, quick_fault_server

DRIVER = r"""
import hashlib, json, os, signal, sys, tempfile
from pathlib import Path
from modelcache import ModelCache, Settings

base, url, repo_id = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
files = json.loads(Path(sys.argv[4]).read_text())
WRAPPED = [(os, "replace"), (os, "rename"), (os, "link"), (os, "symlink"), (os, "fsync"), (tempfile, "mkstemp")]


def settings(cache):
    return Settings(cache_dir=cache, endpoint=url, connections=2, chunk_size=64 * 1024,
                    checkpoint_bytes=32 * 1024, timeout=10)


def run(cache, kill_at, after, count_file=None):
    pid = os.fork()
    if pid == 0:
        calls, names = [0], []
        def wrap(mod, name):
            real = getattr(mod, name)
            def wrapper(*a, **kw):
                calls[0] += 1
                n = calls[0]
                if count_file:
                    names.append(name)
                if n == kill_at and not after:
                    os.kill(os.getpid(), signal.SIGKILL)
                try:
                    return real(*a, **kw)
                finally:  # (a call that fails, e.g. renaming a partial that is not there, counts too)
                    if n == kill_at and after:
                        os.kill(os.getpid(), signal.SIGKILL)
            setattr(mod, name, wrapper)
        for mod, name in WRAPPED:
            wrap(mod, name)
        code = 0
        try:
            ModelCache(settings(cache)).download(repo_id)
        except BaseException as exc:
            sys.stderr.write(f"{type(exc).__name__}: {exc}\n")
            code = 3
        if count_file:
            Path(count_file).write_text(json.dumps(names))
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    return status


def inspect(cache):
    from huggingface_hub import scan_cache_dir
    mc = ModelCache(Settings(cache_dir=cache, offline=True))
    out = {"ready": False, "verified": None, "visible_bad": [], "warnings": []}
    if cache.exists():
        res = mc.check(repo_id)
        out["ready"] = bool(res.ready)
        if res.ready:
            out["verified"] = all(r.ok for r in mc.verify(repo_id))
        for snap in (mc.layout(repo_id).snapshots).glob("*"):
            for p in snap.rglob("*"):
                if p.is_file() or p.is_symlink():
                    rel = p.relative_to(snap).as_posix()
                    try:
                        ok = hashlib.sha256(p.read_bytes()).hexdigest() == files[rel]
                    except OSError:
                        ok = False
                    if not ok:
                        out["visible_bad"].append(rel)
        out["warnings"] = [str(w) for w in scan_cache_dir(cache).warnings]
    return out


count_file = base / "count"
status = run(base / "count-cache", 0, False, count_file)
names = json.loads(count_file.read_text())
print(json.dumps({"names": names, "status": status}), flush=True)
for line in sys.stdin:
    n, after = json.loads(line)
    cache = base / f"c{n}{'a' if after else 'b'}"
    killed = run(cache, n, after)
    first = inspect(cache)
    rerun = run(cache, 0, False)
    second = inspect(cache)
    print(json.dumps({"n": n, "after": after, "killed": killed, "first": first, "rerun": rerun,
                      "second": second}), flush=True)
"""

MiB = 1024 * 1024


def test_kill_at_every_syscall_never_leaves_a_broken_cache(tmp_path: Path) -> None:
    repo = Repo("org/syscalls", {
        "config.json": b'{"model_type": "llama"}',
        "tokenizer.json": b'{"model": {}}',
        "model.safetensors": blob_bytes(b"w", 150_000),
    })
    total = sum(len(d) for d in repo.files.values())
    files = tmp_path / "files.json"
    files.write_text(json.dumps({p: hashlib.sha256(d).hexdigest() for p, d in repo.files.items()}))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "MODELCACHE_"))}
    env["HF_HUB_DISABLE_TELEMETRY"] = "1"
    with quick_fault_server(repo, chunk=16 * 1024) as srv:
        proc = subprocess.Popen([sys.executable, "-c", DRIVER, str(tmp_path), srv.url, repo.repo_id,
                                 str(files)], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        assert proc.stdout is not None and proc.stdin is not None
        head = json.loads(proc.stdout.readline() or "{}")
        assert head.get("status") == 0, proc.stderr.read() if proc.poll() is not None else head
        names = head["names"]
        assert len(names) >= 10  # the download really goes through the wrapped calls
        # killed before every call; and right after every link (a blob or a snapshot entry appears)
        plan = [(n, False) for n in range(1, len(names) + 1)]
        plan += [(n, True) for n, name in enumerate(names, 1) if name in ("link", "symlink")]
        results, tmp_warnings = [], 0
        for n, after in plan:
            before = srv.live_bytes
            proc.stdin.write(json.dumps([n, after]) + "\n")
            proc.stdin.flush()
            line = proc.stdout.readline()
            assert line, proc.stderr.read()
            r = json.loads(line)
            r["served"] = srv.live_bytes - before
            results.append(r)
        proc.stdin.close()
        proc.wait(timeout=30)
    for r in results:
        where = f"killed at call {r['n']} ({'after' if r['after'] else 'before'} it)"
        # SIGKILL: the n-th call was reached (the order of calls across threads may vary a little)
        assert r["killed"] in (9, 0), (where, r)
        first, second = r["first"], r["second"]
        assert not first["ready"] or first["verified"], (where, "ready on a partial")
        assert not first["visible_bad"], (where, first["visible_bad"])
        assert r["rerun"] == 0, (where, "the rerun failed")
        assert second["ready"] and second["verified"], (where, second)
        for w in first["warnings"] + second["warnings"]:
            # temp files of refs/records are moved out of HF's sight on another branch (#14.5)
            if ".tmp" in w:
                tmp_warnings += 1
                continue
            raise AssertionError((where, w))
        assert r["served"] <= 1.1 * total + 2 * MiB, (where, r["served"], total)
    killed = sum(1 for r in results if r["killed"] == 9)
    assert killed >= len(results) * 0.9
    print(f"{killed} kills over {len(names)} calls; {tmp_warnings} scan warnings about *.tmp files")
