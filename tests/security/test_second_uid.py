"""A real second tenant: an unprivileged uid plants links in a shared (world/group-writable)
cache, then root runs ``gc``, ``verify``, ``export``, ``import``: nothing outside the cache is
read, written or deleted, and a root-only file never lands in the cache or a bundle.

Runs only as root (it needs ``os.setuid`` in a subprocess); skipped otherwise.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from helpers.live_server import import_demo

from modelcache.cache.layout import RepoLayout

pytestmark = pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0,
                                reason="needs root to run a second uid via os.setuid")

TENANT = 65534  # nobody
REPO = "org/m"

_PLANT = r"""
import os, sys
from pathlib import Path
cache, outside, commit = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
repo = cache / "models--org--m"
assert os.getuid() != 0
# the state folder GC deletes in: a link to root's folder
used = repo / ".modelcache" / "used"
if used.exists():
    for p in used.iterdir():
        p.unlink()
    used.rmdir()
os.symlink(outside, used)
# predictable temp names of older versions, and a dangling CACHEDIR.TAG
blobs = sorted(p.name for p in (repo / "blobs").iterdir())
for b in blobs:
    os.unlink(repo / "blobs" / b)  # gone: a bundle import must write them again...
    os.symlink(outside / "victim", repo / "blobs" / f"{b}.bundle.incomplete")  # ...not through these
os.unlink(cache / "CACHEDIR.TAG")
os.symlink(outside / "made-by-root", cache / "CACHEDIR.TAG")
# a snapshot file swapped for a link to root's secret, an orphan "blob" linking out
snap = repo / "snapshots" / commit / "config.json"
os.unlink(snap)
os.symlink(outside / "secret", snap)
os.symlink(outside / "victim", repo / "blobs" / ("f" * 40))
print("planted")
"""


def _tenant_python() -> tuple[str, str]:
    """An interpreter and ``PYTHONPATH`` the tenant uid can use (root's venv may sit in /root)."""
    import modelcache

    src = str(Path(modelcache.__file__).resolve().parents[1])
    site = [p for p in sys.path if p.endswith("site-packages")]
    for exe in (os.path.realpath(sys.executable), "/usr/bin/python3", "/usr/local/bin/python3"):
        if os.path.exists(exe) and _tenant_can_run(exe):
            return exe, os.pathsep.join([src, *site])
    pytest.skip("no python interpreter the second uid may run")


def _tenant_can_run(exe: str) -> bool:
    try:
        subprocess.run([exe, "-c", "pass"], preexec_fn=_drop, timeout=30, check=True, capture_output=True)
        return True
    except (OSError, subprocess.SubprocessError):
        return False


def _drop() -> None:
    os.setgroups([])
    os.setgid(TENANT)
    os.setuid(TENANT)


def _as_tenant(*args: str) -> subprocess.CompletedProcess[str]:
    exe, path = _tenant_python()
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update(HOME="/tmp", PYTHONPATH=path)
    return subprocess.run([exe, *args], preexec_fn=_drop, capture_output=True, text=True, timeout=60, env=env,
                          cwd="/tmp")


def _as_root(cache: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    return subprocess.run([sys.executable, "-m", "modelcache", "--cache-dir", str(cache), "--offline", *args],
                          capture_output=True, text=True, timeout=60, env=env)


def _digest(folder: Path) -> dict[str, str]:
    out = {}
    for p in sorted(folder.rglob("*")):
        out[p.name] = "link" if p.is_symlink() else hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "d"
    return out


def test_tenant_links_never_make_root_leave_the_cache() -> None:
    base = Path(tempfile.mkdtemp(prefix="mc-2uid-"))
    try:
        os.chmod(base, 0o755)
        cache = base / "cache"
        record = import_demo(cache, REPO)
        for root, dirs, files in os.walk(cache):
            for name in dirs:
                os.chmod(os.path.join(root, name), 0o777)  # a shared, group-writable volume
        os.chmod(cache, 0o777)
        outside = base / "root-only"
        outside.mkdir(mode=0o700)
        (outside / "victim").write_bytes(b"root's file")
        (outside / record.commit).write_bytes(b"root's file named like a commit")
        size = (RepoLayout(cache, "model", REPO).snapshot(record.commit) / "config.json").stat().st_size
        (outside / "secret").write_bytes(b"S" * size)
        os.chmod(outside / "secret", 0o600)
        os.chmod(outside, 0o755)  # the tenant may name it in a link, not write it
        good = base / "good.tar"
        assert _as_root(cache, "export", REPO, "-o", str(good)).returncode == 0
        planted = _as_tenant("-c", _PLANT, str(cache), str(outside), record.commit)
        assert planted.returncode == 0, planted.stderr
        before = _digest(outside)

        # root: export, import a bundle, verify, gc — the usual Job / CronJob work
        bundle = base / "b.tar"
        p = _as_root(cache, "export", REPO, "-o", str(bundle))
        assert "Traceback" not in p.stderr, p.stderr
        if bundle.exists():
            assert b"S" * size not in bundle.read_bytes()  # the root-only secret never exported
        p = _as_root(cache, "import", str(good))
        assert "Traceback" not in p.stderr, p.stderr
        assert _digest(outside) == before
        for args in (["verify", REPO], ["ls"], ["check", REPO], ["gc", "--max-size", "1"]):
            p = _as_root(cache, *args)
            assert "Traceback" not in p.stderr, p.stderr
        assert _digest(outside) == before
        assert not (outside / "made-by-root").exists()
        for blob in (cache / "models--org--m" / "blobs").iterdir():
            if blob.is_file() and not blob.is_symlink():
                assert blob.read_bytes() != b"S" * size
                assert stat.S_IMODE(blob.stat().st_mode) & 0o002 == 0

        # the tenant reading root's cache: clear lines, no traceback
        for args in (["ls"], ["check", REPO], ["verify", REPO]):
            p = _as_tenant("-m", "modelcache", "--cache-dir", str(cache), "--offline", *args)
            assert "Traceback" not in p.stderr, p.stderr
    finally:
        shutil.rmtree(base, ignore_errors=True)
