"""One cache, many processes: concurrent downloads, kills, GC under load, a full disk."""

from __future__ import annotations

import hashlib
import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
from helpers.fault_server import Repo, fault_server
from helpers.repos import assert_snapshot_is

from modelcache import ModelCache, Settings, TokenSource
from modelcache.cache.readiness import check_revision
from modelcache.errors import CacheError

MiB = 1024 * 1024


def model(repo_id: str, shards: int = 4, shard_size: int = MiB, seed: bytes = b"") -> Repo:
    tag = seed.hex().encode()  # distinct content per repo, still valid JSON (check parses it)
    files = {"config.json": b'{"model_type": "llama", "seed": "%s"}' % tag, "tokenizer.json": b'{"model": {}, "seed": "%s"}' % tag}
    weight_map = {}
    for i in range(shards):
        name = f"model-{i + 1:05d}-of-{shards:05d}.safetensors"
        block = hashlib.sha256(seed + name.encode()).digest() * 2048
        files[name] = (block * (shard_size // len(block) + 1))[:shard_size]
        weight_map[f"w{i}"] = name
    files["model.safetensors.index.json"] = repr({"weight_map": weight_map}).replace("'", '"').encode()
    return Repo(repo_id, files, commit=hashlib.sha1(repo_id.encode() + seed).hexdigest())


def spawn(cache: Path, url: str, repo_id: str, *extra: str, small_file_bytes: int | None = None) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env["MODELCACHE_CHECKPOINT_BYTES"] = str(64 * 1024)
    if small_file_bytes is not None:
        env["MODELCACHE_SMALL_FILE_BYTES"] = str(small_file_bytes)
    return subprocess.Popen([sys.executable, "-m", "modelcache", "--cache-dir", str(cache), "--endpoint", url,
                             *extra, "download", repo_id, "--quiet"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def assert_snapshot_exact(cache: Path, repo: Repo) -> None:
    assert_snapshot_is(cache, repo, ready=False)


class ReadyWatcher(threading.Thread):
    """Polls `check` the whole time; whenever it says ready, every byte must already be right."""

    def __init__(self, cache: Path, repo: Repo) -> None:
        super().__init__(daemon=True)
        self.cache, self.repo = cache, repo
        self.stop = threading.Event()
        self.violations: list[str] = []
        self.ready_seen = 0

    def run(self) -> None:
        mc = ModelCache(Settings(cache_dir=self.cache, offline=True))
        layout = mc.layout(self.repo.repo_id)
        while not self.stop.is_set():
            r = check_revision(layout, "main", "full")
            if r.ready:
                self.ready_seen += 1
                for path, data in self.repo.files.items():
                    try:
                        if (r.snapshot / path).read_bytes() != data:
                            self.violations.append(f"{path} wrong while check said ready")
                    except FileNotFoundError:
                        pass  # removed by the test between iterations
            time.sleep(0.005)


def test_eight_processes_fetch_the_bytes_about_once(tmp_path: Path) -> None:
    """Blobs on the locked path (bigger than ``small_file_bytes``) are fetched by one process;
    the others wait for them."""
    repo = model("org/shared")
    total = sum(len(d) for d in repo.files.values())
    cache = tmp_path / "cache"
    with fault_server(repo, chunk=64 * 1024, delay=0.005) as srv:
        procs = [spawn(cache, srv.url, repo.repo_id, small_file_bytes=0) for _ in range(8)]
        outs = [p.communicate(timeout=120) for p in procs]
        for p, (out, err) in zip(procs, outs):
            assert p.returncode == 0, err.decode()
            assert out.decode().strip().endswith(repo.commit)
        served = srv.live_bytes
    assert served <= 1.1 * total, (served, total)
    assert_snapshot_exact(cache, repo)
    (report,) = ModelCache(Settings(cache_dir=cache, offline=True)).verify(repo.repo_id)
    assert report.ok


def test_twenty_kills_never_show_a_partial_revision_ready(tmp_path: Path) -> None:
    repo = model("org/killed", shards=3, shard_size=MiB)
    cache = tmp_path / "cache"
    rnd = random.Random(7)
    watcher = ReadyWatcher(cache, repo)
    watcher.start()
    mc = ModelCache(Settings(cache_dir=cache, offline=True))
    try:
        with fault_server(repo, chunk=32 * 1024, delay=0.004) as srv:
            for i in range(20):
                proc = spawn(cache, srv.url, repo.repo_id)
                time.sleep(rnd.uniform(0.25, 0.9))  # python start-up is ~0.25 s: kill during the transfer
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                again = spawn(cache, srv.url, repo.repo_id)
                out, err = again.communicate(timeout=120)
                assert again.returncode == 0, f"run {i}: {err.decode()}"
                assert mc.check(repo.repo_id).ready
                assert_snapshot_exact(cache, repo)
                mc.rm(repo.repo_id)  # start the next round from nothing
    finally:
        watcher.stop.set()
        watcher.join()
    assert watcher.violations == []
    assert watcher.ready_seen > 0


def test_gc_loop_with_downloads_and_leases(tmp_path: Path) -> None:
    repos = [model(f"org/m{i}", shards=2, shard_size=MiB // 2, seed=bytes([i])) for i in range(4)]
    size_each = sum(len(d) for d in repos[0].files.values())
    cache = tmp_path / "cache"
    budget = int(size_each * 2.5)
    errors: list[str] = []
    stop = threading.Event()
    work = {"gc_runs": 0, "gc_removed": 0, "uses": 0}  # a soak that did no work proves nothing

    servers = [fault_server(r, chunk=64 * 1024, delay=0.001) for r in repos]
    urls = [s.__enter__().url for s in servers]
    try:
        mc = ModelCache(Settings(cache_dir=cache, endpoint=urls[0], token=TokenSource()))
        mc.set_budget(10 * size_each)  # downloads must not be refused by the budget; gc gets --max-size
        pinned = repos[0]
        ModelCache(Settings(cache_dir=cache, endpoint=urls[0], token=TokenSource())).download(pinned.repo_id)
        mc.pin(pinned.repo_id, "main")

        def gc_loop() -> None:
            g = ModelCache(Settings(cache_dir=cache, offline=True))
            while not stop.is_set():
                try:
                    report = g.gc(max_size=budget)
                    work["gc_runs"] += 1
                    work["gc_removed"] += len(report.plan.remove) - len(report.skipped)
                except Exception as exc:  # noqa: BLE001 - collected and asserted below
                    errors.append(f"gc: {exc!r}")
                time.sleep(0.01)

        def user(idx: int) -> None:
            rnd = random.Random(idx)
            while not stop.is_set():
                i = rnd.randrange(1, len(repos))
                r = repos[i]
                node = ModelCache(Settings(cache_dir=cache, endpoint=urls[i], token=TokenSource()))
                try:
                    with node.use(r.repo_id, holder=f"user-{idx}", ttl=5):
                        work["uses"] += 1
                        for _ in range(5):
                            time.sleep(0.02)
                            if not node.check(r.repo_id).ready:
                                errors.append(f"{r.repo_id} removed while leased")
                except Exception as exc:  # noqa: BLE001
                    errors.append(f"user {idx}: {exc!r}")

        threads = [threading.Thread(target=gc_loop)] + [threading.Thread(target=user, args=(k,)) for k in range(2)]
        for t in threads:
            t.start()
        time.sleep(6)
        stop.set()
        for t in threads:
            t.join(timeout=60)
    finally:
        for s in servers:
            s.__exit__(None, None, None)
    assert errors == []
    assert work["gc_runs"] >= 5 and work["uses"] >= 4 and work["gc_removed"] >= 1, work
    final = ModelCache(Settings(cache_dir=cache, offline=True))
    assert final.check(pinned.repo_id).ready  # pinned: never collected
    report = final.gc(max_size=budget)
    assert report.plan.size_after <= budget
    assert all(r.ok for r in final.verify())


def _mount_tmpfs(path: Path, size: str) -> bool:
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        return False
    return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                          capture_output=True).returncode == 0


def test_disk_full_is_clear_consistent_and_resumable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    repo = model("org/full", shards=4, shard_size=MiB)
    total = sum(len(d) for d in repo.files.values())
    mnt = tmp_path / "small"
    mounted = _mount_tmpfs(mnt, "6m")
    cache = mnt / "cache"
    try:
        with fault_server(repo, chunk=64 * 1024, delay=0.01) as srv:
            mc = ModelCache(Settings(cache_dir=cache, endpoint=srv.url, token=TokenSource(), connections=2,
                                     checkpoint_bytes=64 * 1024, small_file_bytes=0))
            filler = mnt / f"filler-{uuid.uuid4().hex}"
            if mounted:
                # the space check passes (6 MiB free > 4 MiB needed); then something else fills the disk
                def fill() -> None:
                    while srv.live_bytes < MiB:
                        time.sleep(0.01)
                    with open(filler, "wb") as fh:
                        try:
                            while True:
                                fh.write(b"\0" * 65536)
                        except OSError:
                            pass

                t = threading.Thread(target=fill)
                t.start()
            else:  # no tmpfs here: inject ENOSPC into the writes once a MiB has landed
                real = os.pwrite
                written = {"n": 0}

                def pwrite(fd: int, data: bytes, offset: int) -> int:
                    written["n"] += len(data)
                    if written["n"] > MiB:
                        raise OSError(28, "No space left on device")
                    return real(fd, data, offset)

                monkeypatch.setattr(os, "pwrite", pwrite)
            with pytest.raises(CacheError) as err:
                mc.download(repo.repo_id)
            assert "full" in err.value.message and "resumes" in err.value.hint
            if mounted:
                t.join()
                filler.unlink()
            else:
                monkeypatch.setattr(os, "pwrite", real)
            # consistent: not ready, nothing partial visible
            assert not mc.check(repo.repo_id).ready
            snap = mc.layout(repo.repo_id).snapshot(repo.commit)
            for p in snap.rglob("*"):
                if p.is_file():
                    assert p.read_bytes() == repo.files[p.relative_to(snap).as_posix()]
            before = srv.live_bytes
            result = mc.download(repo.repo_id)
            assert result.bytes_resumed > 0
            assert srv.live_bytes - before < total
        assert_snapshot_exact(cache, repo)
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(mnt)], capture_output=True)
