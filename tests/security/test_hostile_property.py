"""Property: whatever links, FIFOs, folders and junk a co-tenant plants in a cache, ``ls``,
``check``, ``verify``, ``gc`` (in-process API and CLI) change nothing outside the cache, never
give a traceback and never hang."""

from __future__ import annotations

import faulthandler
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from helpers.fs import tree_digest
from helpers.live_server import import_demo
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modelcache.cache.gc import execute_gc, plan_gc, scan_revisions, sweep
from modelcache.cache.inventory import scan_cache
from modelcache.cache.layout import RepoLayout
from modelcache.cache.readiness import check_revision
from modelcache.cache.verify import verify_revision
from modelcache.cli.main import cli
from modelcache.errors import ModelCacheError

REPO = "org/m"
F = "models--org--m"

_TEMPLATE: dict[str, object] = {}


def _template() -> tuple[Path, str, list[str]]:
    if not _TEMPLATE:
        base = Path(tempfile.mkdtemp(prefix="mc-prop-"))
        record = import_demo(base / "cache", REPO)
        layout = RepoLayout(base / "cache", "model", REPO)
        _TEMPLATE.update(base=base, commit=record.commit, blobs=sorted(p.name for p in layout.blobs.iterdir()))
    return _TEMPLATE["base"] / "cache", _TEMPLATE["commit"], _TEMPLATE["blobs"]  # type: ignore[return-value]


def _places(commit: str, blobs: list[str]) -> list[str]:
    return [
        f"{F}/blobs", f"{F}/blobs/{blobs[0]}", f"{F}/blobs/{blobs[1]}.mc.incomplete", f"{F}/blobs/{'f' * 40}",
        f"{F}/snapshots/{commit}", f"{F}/snapshots/{commit}/config.json", f"{F}/snapshots/{commit}/original",
        f"{F}/snapshots/{commit}/model.safetensors.index.json", f"{F}/snapshots/{'e' * 40}", f"{F}/snapshots/odd",
        f"{F}/refs", f"{F}/refs/main", f"{F}/refs/v9", f"{F}/trees/{commit}.json", f"{F}/trees",
        f"{F}/.modelcache", f"{F}/.modelcache/used", f"{F}/.modelcache/used/{commit}", f"{F}/.modelcache/pins",
        f"{F}/.modelcache/leases", f"{F}/.modelcache/leases/{commit}/{'1' * 32}.json", f"{F}/.modelcache/access.json",
        f"{F}/.modelcache/active/{commit}.{'2' * 32}", f"{F}/.modelcache/tmp", ".locks", f".locks/{F}",
        f".locks/{F}/repo.mc-lock", ".locks/modelcache/quota.json", ".locks/modelcache/gc-stats.json",
        ".locks/modelcache/models.json", "CACHEDIR.TAG", "models--org--x",
    ]


KINDS = ["link-file", "link-dir", "link-dangling", "fifo", "dir", "binary", "json-junk", "empty"]


def _plant(cache: Path, rel: str, kind: str, outside: Path) -> None:
    p = cache / rel
    for parent in reversed(p.relative_to(cache).parents):
        q = cache / parent
        if os.path.lexists(q) and (q.is_symlink() or not q.is_dir()):
            return  # an earlier plant replaced a folder on the way: nothing to plant into
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p)
    elif os.path.lexists(p):
        p.unlink()
    p.parent.mkdir(parents=True, exist_ok=True)
    if kind == "link-file":
        os.symlink(outside / "victim", p)
    elif kind == "link-dir":
        os.symlink(outside, p)
    elif kind == "link-dangling":
        os.symlink(outside / "created-by-us", p)
    elif kind == "fifo":
        os.mkfifo(p)
    elif kind == "dir":
        p.mkdir()
    elif kind == "binary":
        p.write_bytes(bytes(range(256)))
    elif kind == "json-junk":
        p.write_bytes(b'{"max_size": 1e999, "pid": NaN, "files": [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}')
    else:
        p.write_bytes(b"")
    old = time.time() - 3600  # planted a while ago (a fresh empty lock file is waited for, like a live one)
    os.utime(p, (old, old), follow_symlinks=False)




def _outside(base: Path, commit: str, blobs: list[str]) -> Path:
    """Bait: files named like blobs, commits and state, for a confused delete to remove."""
    out = base / "outside"
    out.mkdir()
    (out / "victim").write_bytes(b"precious")
    for name in [*blobs, commit, f"{commit}.json", "main", "quota.json", "config.json"]:
        (out / name).write_bytes(b"bait " + name.encode())
    (out / "sub").mkdir()
    (out / "sub" / "deep").write_bytes(b"deep bait")
    return out


@pytest.fixture(autouse=True)
def _no_hang() -> object:
    faulthandler.dump_traceback_later(120, exit=True)
    yield
    faulthandler.cancel_dump_traceback_later()


def _api(fn, *args, **kw):  # type: ignore[no-untyped-def]
    """Call the API: a result or one clear ``ModelCacheError`` are fine; anything else is a bug."""
    try:
        return fn(*args, **kw)
    except ModelCacheError as exc:
        assert exc.hint, exc
        return None


def _serve(cache: Path, commit: str) -> None:
    """``serve`` over the hostile cache: answers (no 5xx), and never a byte from outside the cache."""
    from starlette.testclient import TestClient

    from modelcache.server import create_app

    with TestClient(create_app(cache)) as client:
        for url in ("/healthz", "/metrics", f"/api/models/{REPO}", f"/api/models/{REPO}/tree/main?recursive=1",
                    f"/{REPO}/resolve/main/config.json", f"/{REPO}/resolve/{commit}/original/params.json",
                    f"/{REPO}/resolve/{commit}/model.safetensors.index.json"):
            r = client.get(url)
            assert r.status_code < 500, (url, r.status_code)
            assert b"bait" not in r.content and b"precious" not in r.content, url


def _run_everything(cache: Path, commit: str) -> None:
    layout = RepoLayout(cache, "model", REPO)
    _api(scan_cache, cache)
    for rev in ("main", commit, "v9"):
        for profile in ("tokenizer", "full"):
            _api(check_revision, layout, rev, profile)
    _api(verify_revision, layout, commit)
    revs = _api(scan_revisions, [cache]) or []
    _api(execute_gc, plan_gc(revs, max_size=1, max_age=0, now=time.time() + 10**7))
    _api(sweep, cache, partial_max_age=0)
    _serve(cache, commit)
    for args in (["ls", "--json"], ["check", REPO], ["verify", REPO], ["gc", "--max-size", "1"]):
        res = CliRunner().invoke(cli, ["--cache-dir", str(cache), "--offline", *args], obj={})
        assert res.exception is None or isinstance(res.exception, SystemExit), (args, repr(res.exception))
        assert "Traceback" not in res.output


@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(plants=st.lists(st.tuples(st.integers(0, 31), st.sampled_from(KINDS)), min_size=1, max_size=6))
def test_random_plants_never_escape_the_cache(plants: list[tuple[int, str]]) -> None:
    template, commit, blobs = _template()
    base = Path(tempfile.mkdtemp(prefix="mc-prop-run-"))
    try:
        cache = base / "cache"
        shutil.copytree(template, cache, symlinks=True)
        outside = _outside(base, commit, blobs)
        places = _places(commit, blobs)
        for idx, kind in plants:
            _plant(cache, places[idx % len(places)], kind, outside)
        before = tree_digest(outside)
        _run_everything(cache, commit)
        assert tree_digest(outside) == before
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_cli_subprocesses_on_a_hostile_cache(tmp_path: Path) -> None:
    """Real processes (with a timeout: a hang fails, it does not wait): nothing outside changes."""
    cache = tmp_path / "cache"
    record = import_demo(cache, REPO)
    blobs = sorted(p.name for p in RepoLayout(cache, "model", REPO).blobs.iterdir())
    outside = _outside(tmp_path, record.commit, blobs)
    places = _places(record.commit, blobs)
    for i, rel in enumerate(places):
        if rel in (F + "/blobs", F + "/snapshots/" + record.commit):
            continue
        _plant(cache, rel, KINDS[i % len(KINDS)], outside)
    before = tree_digest(outside)
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    for args in (["ls"], ["check", REPO], ["gc", "--max-size", "1"]):
        p = subprocess.run([sys.executable, "-m", "modelcache", "--cache-dir", str(cache), "--offline", *args],
                           capture_output=True, text=True, timeout=60, env=env)
        assert "Traceback" not in p.stderr + p.stdout, p.stderr
        # 7: a state folder is not what it must be and the command refuses (gc will not guess what
        # the model registry protects): one line naming the file, which is right
        assert p.returncode in (0, 1, 7), (args, p.returncode, p.stderr)
        assert p.returncode != 7 or "hint:" in p.stderr
    assert tree_digest(outside) == before
