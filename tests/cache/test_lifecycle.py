"""Locks, leases, pins, GC planning and execution, verify/repair, quotas, bundles."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers.fault_server import Repo, fault_server

from modelcache import ModelCache, Settings, TokenSource
from modelcache.cache.gc import RevisionState, plan_gc
from modelcache.cache.layout import RepoLayout
from modelcache.cache.locks import FileLock
from modelcache.errors import CacheError, IntegrityError, InvalidInput

REPO = "modelcache/tiny-llama"


def imported(tmp_path: Path, demo_model: Path, revisions: int = 1) -> tuple[ModelCache, list[str]]:
    mc = ModelCache(Settings(cache_dir=tmp_path / "c", offline=True))
    commits = [mc.import_folder(demo_model, REPO).commit]
    for i in range(1, revisions):
        d = tmp_path / f"v{i}"
        shutil.copytree(demo_model, d)
        (d / "config.json").write_text(json.dumps({"model_type": "llama", "v": i}))
        (d / f"extra-{i}.bin").write_bytes(os.urandom(10_000 * (i + 1)))
        commits.append(mc.import_folder(d, REPO, f"v{i}").commit)
    return mc, commits


# -- locks ---------------------------------------------------------------------------------------------
def test_lock_is_exclusive_and_released(tmp_path: Path) -> None:
    a, b = FileLock(tmp_path / "x.lock"), FileLock(tmp_path / "x.lock")
    assert a.try_acquire()
    assert not b.try_acquire()
    a.release()
    assert b.try_acquire()
    b.release()
    assert not (tmp_path / "x.lock").exists()


def test_lock_of_a_dead_process_is_taken_over_at_once(tmp_path: Path) -> None:
    code = ("import sys; from modelcache.cache.locks import FileLock; "
            f"assert FileLock(__import__('pathlib').Path({str(tmp_path / 'x.lock')!r})).try_acquire()")
    subprocess.run([sys.executable, "-c", code], check=True)  # exits holding the lock
    assert (tmp_path / "x.lock").exists()
    lk = FileLock(tmp_path / "x.lock", stale_after=3600)
    assert lk.try_acquire()  # same host, pid gone → dead
    lk.release()


def test_lock_without_heartbeat_goes_stale(tmp_path: Path) -> None:
    path = tmp_path / "x.lock"
    path.write_text(json.dumps({"host": "another-host", "pid": 1, "token": "t"}))
    old = time.time() - 100
    os.utime(path, (old, old))
    assert not FileLock(path, stale_after=1000).try_acquire()
    lk = FileLock(path, stale_after=10)
    assert lk.try_acquire() and lk.still_mine()
    lk.release()


def test_heartbeat_keeps_lock_alive(tmp_path: Path) -> None:
    lk = FileLock(tmp_path / "x.lock", stale_after=0.6, heartbeat=0.1)
    assert lk.try_acquire()
    other = FileLock(tmp_path / "x.lock", stale_after=0.6)
    other_host = json.loads((tmp_path / "x.lock").read_text())
    other_host["host"] = "elsewhere"  # make the pid check inapplicable: only the heartbeat counts
    (tmp_path / "x.lock").write_text(json.dumps(other_host))
    time.sleep(1.0)
    assert not other.try_acquire()
    lk.release()


def test_a_replaced_lock_file_is_seen_at_once(tmp_path: Path) -> None:
    """The fence's cheap path (one lstat) never hides a takeover: a takeover renames the file
    aside and creates a new one (here with the same size and a fresh token)."""
    path = tmp_path / "x.lock"
    lk = FileLock(path, stale_after=30)
    assert lk.try_acquire() and lk.still_mine()
    body = json.loads(path.read_text())
    os.rename(path, tmp_path / "x.lock.dead")
    path.write_text(json.dumps({**body, "token": "f" * len(body["token"])}))
    assert not lk.still_mine()
    lk.release()
    assert path.exists()  # not ours: left alone


def test_a_stalled_holder_sees_its_lock_was_taken_over(tmp_path: Path) -> None:
    """A holder stopped past the staleness window (no heartbeat meanwhile) finds out at its
    next fence check, before it writes anything, and leaves the new holder's lock alone."""
    from modelcache.cache.locks import _HEARTBEAT

    path = tmp_path / "x.lock"
    stalled = FileLock(path, stale_after=0.6, heartbeat=0.2)
    assert stalled.try_acquire() and stalled.still_mine()
    _HEARTBEAT.remove(path)  # as if SIGSTOPped: nothing touches its lock any more
    time.sleep(1.0)
    taker = FileLock(path, stale_after=0.6)
    assert taker.try_acquire()
    assert not stalled.still_mine()
    stalled.release()
    assert taker.still_mine()
    taker.release()


def test_the_fence_reads_the_lock_only_when_it_changed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from modelcache.cache import locks

    reads = []
    real = locks.read_json_state
    monkeypatch.setattr(locks, "read_json_state", lambda *a, **kw: reads.append(a) or real(*a, **kw))
    lk = FileLock(tmp_path / "x.lock", stale_after=300)
    assert lk.try_acquire()
    assert all(lk.still_mine() for _ in range(100)) and reads == []  # the file we wrote, unchanged
    later = time.time() + 5
    os.utime(tmp_path / "x.lock", (later, later))  # a heartbeat touched it: read again, still ours
    assert lk.still_mine() and len(reads) == 1
    assert lk.still_mine() and len(reads) == 1
    lk.release()
    assert not (tmp_path / "x.lock").exists()


# -- leases and pins -------------------------------------------------------------------------------------
def test_lease_lifecycle(tmp_path: Path, demo_model: Path) -> None:
    mc, (commit,) = imported(tmp_path, demo_model)
    info = mc.acquire_lease(REPO, "main", "pod-a", ttl=0.5)
    assert [le.lease_id for le in mc.leases()] == [info.lease_id]
    time.sleep(0.7)
    assert mc.leases() == []  # expired on its own
    with mc.lease(REPO, holder="engine", ttl=0.6):
        time.sleep(1.0)  # renewed in the background
        assert len(mc.leases(REPO)) == 1
    assert mc.leases() == []
    with pytest.raises(InvalidInput):
        mc.renew_lease(REPO, "f" * 32)


def test_gc_never_removes_pinned_or_leased(tmp_path: Path, demo_model: Path) -> None:
    mc, commits = imported(tmp_path, demo_model, revisions=4)
    mc.pin(REPO, "v1")
    mc.acquire_lease(REPO, "v2", "pod", ttl=600)
    report = mc.gc(max_size=1)
    removed = {d.revision.commit for d in report.plan.remove}
    assert removed == {commits[0], commits[3]}
    assert {r.commit: why for r, why in report.plan.kept} == {commits[1]: "pinned", commits[2]: "leased"}
    assert mc.check(REPO, revision="v1").ready and mc.check(REPO, revision="v2").ready
    assert not mc.check(REPO, revision="v3").ready
    assert report.plan.notes  # could not reach the budget: says why


def test_gc_plan_lru_and_shared_blobs() -> None:
    def rev(commit: str, used: float, blobs: dict[str, int], **kw: bool) -> RevisionState:
        return RevisionState(Path("/c"), "model", "o/m", commit * 40, (), frozenset(blobs.items()), used,
                             kw.get("pinned", False), kw.get("leased", False), kw.get("in_progress", False))

    revs = [rev("a", 100, {"/b/1": 50, "/b/shared": 100}), rev("b", 200, {"/b/2": 50, "/b/shared": 100}),
            rev("c", 300, {"/b/3": 50}), rev("d", 50, {"/b/4": 500}, in_progress=True)]
    plan = plan_gc(revs, max_size=650, now=1000)
    assert [d.revision.commit[0] for d in plan.remove] == ["a", "b"]
    assert [d.freed for d in plan.remove] == [50, 150]  # shared blob freed once, with the last user
    assert plan.size_before == 750 and plan.size_after == 550
    assert plan.kept[0][1] == "download in progress"
    assert [d.revision.commit[0] for d in plan_gc(revs, max_age=850, now=1000).remove] == ["a"]
    assert [d.revision.commit[0] for d in plan_gc(revs, keep_last=2, now=1000).remove] == ["a"]


def test_gc_dry_run_removes_nothing(tmp_path: Path, demo_model: Path) -> None:
    mc, commits = imported(tmp_path, demo_model, revisions=2)
    report = mc.gc(keep_last=1, dry_run=True)
    assert len(report.plan.remove) == 1
    assert all(mc.check(REPO, revision=c).ready for c in commits)


def test_gc_sweeps_stale_partials_and_dead_locks(tmp_path: Path, demo_model: Path) -> None:
    mc, _ = imported(tmp_path, demo_model)
    layout = mc.layout(REPO)
    stale = layout.blobs / ("e" * 64 + ".mc.incomplete")
    stale.write_bytes(b"x" * 100)
    fresh = layout.blobs / ("f" * 64 + ".mc.incomplete")
    fresh.write_bytes(b"y")
    old = time.time() - 2 * 86400
    os.utime(stale, (old, old))
    layout.locks.mkdir(parents=True, exist_ok=True)
    dead = layout.locks / ("e" * 64 + ".mc-lock")
    dead.write_text(json.dumps({"host": os.uname().nodename, "pid": 999_999_999, "token": "x"}))
    report = mc.gc()
    swept = report.swept[str(mc.cache_dir)]
    assert swept["partials"] == 1 and swept["locks"] == 1
    assert not stale.exists() and fresh.exists() and not dead.exists()


# -- verify / repair ----------------------------------------------------------------------------------------
def test_verify_and_repair(tmp_path: Path, demo_model: Path) -> None:
    from helpers.live_server import live_server

    source, _ = imported(tmp_path, demo_model)
    with live_server(source.cache_dir) as url:
        mc = ModelCache(Settings(cache_dir=tmp_path / "node", endpoint=url, token=TokenSource()))
        res = mc.download(REPO)
        (report,) = mc.verify(REPO)
        assert report.ok and report.checked == 9
        snap = res.snapshot
        blob = Path(os.path.realpath(snap / "model-00001-of-00002.safetensors"))
        data = bytearray(blob.read_bytes())
        data[100] ^= 0xFF
        blob.write_bytes(bytes(data))
        os.unlink(snap / "config.json")
        Path(os.path.realpath(snap / "tokenizer.json")).write_bytes(b"{}")
        (report,) = mc.verify(REPO)
        kinds = {p.path: p.kind for p in report.problems}
        assert kinds == {"model-00001-of-00002.safetensors": "corrupt", "config.json": "missing",
                         "tokenizer.json": "wrong-size"}
        (fixed,) = mc.verify(REPO, repair=True)
        assert fixed.ok
        assert mc.check(REPO).ready
        for p in source.layout(REPO).snapshot(res.commit).rglob("*"):
            if p.is_file():
                assert (snap / p.relative_to(source.layout(REPO).snapshot(res.commit))).read_bytes() == p.read_bytes()


# -- quotas ------------------------------------------------------------------------------------------------
def test_quota_refuses_before_any_byte(tmp_path: Path) -> None:
    repo = Repo("org/big", {"config.json": b"{}", "tokenizer.json": b'{"a":1}',
                            "model.safetensors": os.urandom(200_000)})
    mc = ModelCache(Settings(cache_dir=tmp_path / "c", endpoint="http://127.0.0.1:1", token=TokenSource()))
    mc.set_budget(100_000)
    with fault_server(repo) as srv:
        mc = ModelCache(Settings(cache_dir=tmp_path / "c", endpoint=srv.url, token=TokenSource()))
        with pytest.raises(CacheError) as err:
            mc.download("org/big")
        assert "needs 195.3 KiB" in err.value.message and "budget" in err.value.message
        assert "quota set" in err.value.hint and "--max-size 0B" not in err.value.hint  # gc cannot make room
        assert srv.bytes_served() == 0
        mc.set_budget(1_000_000)
        assert mc.download("org/big").bytes_fetched > 200_000
    assert mc.usage().used >= 200_000


# -- bundles -------------------------------------------------------------------------------------------------
def test_export_import_roundtrip(tmp_path: Path, demo_model: Path) -> None:
    mc, (commit,) = imported(tmp_path, demo_model)
    buf = io.BytesIO()
    info = mc.export(REPO, "main", buf)
    assert info.files == 9 and info.commit == commit
    other = ModelCache(Settings(cache_dir=tmp_path / "air-gapped", offline=True))
    buf.seek(0)
    restored = other.import_bundle(buf)
    assert restored.commit == commit and restored.revision == "main"
    assert other.check(REPO).ready and other.verify(REPO)[0].ok


def test_tampered_bundle_is_refused(tmp_path: Path, demo_model: Path) -> None:
    mc, _ = imported(tmp_path, demo_model)
    buf = io.BytesIO()
    mc.export(REPO, "main", buf)
    raw = bytearray(buf.getvalue())
    i = raw.find(b'"LlamaForCausalLM"')
    raw[i + 2] ^= 0x01  # flip a byte inside config.json's content
    other = ModelCache(Settings(cache_dir=tmp_path / "other", offline=True))
    with pytest.raises(IntegrityError):
        other.import_bundle(io.BytesIO(bytes(raw)))
    assert not other.check(REPO).ready
    assert not any(RepoLayout(tmp_path / "other", "model", REPO).snapshots.rglob("config.json"))
    with pytest.raises(InvalidInput):
        other.import_bundle(io.BytesIO(b"not a tar at all" * 100))
