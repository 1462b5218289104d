"""A real `modelcache download` process killed with SIGKILL half-way, then restarted."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from helpers.fault_server import Repo, fault_server

from modelcache import ModelCache, Settings

SHARD = 3 * 1024 * 1024


def big_repo() -> Repo:
    def blob(seed: bytes) -> bytes:
        block = hashlib.sha256(seed).digest() * 2048  # 64 KiB
        return (block * (SHARD // len(block) + 1))[:SHARD]

    return Repo("org/killme", {
        "config.json": b'{"model_type": "llama"}',
        "tokenizer.json": b'{"model": {}}',
        "model.safetensors.index.json": b'{"weight_map": {"a": "model-00001-of-00002.safetensors", '
                                        b'"b": "model-00002-of-00002.safetensors"}}',
        "model-00001-of-00002.safetensors": blob(b"one"),
        "model-00002-of-00002.safetensors": blob(b"two") + b"tail",
    })


def start(cache: Path, url: str) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env["MODELCACHE_CHECKPOINT_BYTES"] = str(128 * 1024)
    return subprocess.Popen(
        [sys.executable, "-m", "modelcache", "--cache-dir", str(cache), "--endpoint", url,
         "download", "org/killme", "--quiet"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )


def visible_files_are_whole(cache: Path, repo: Repo) -> None:
    for snap in (cache / "models--org--killme" / "snapshots").glob("*"):
        for p in snap.rglob("*"):
            if p.is_file():
                assert p.read_bytes() == repo.files[p.relative_to(snap).as_posix()], p


def test_sigkill_then_resume(tmp_path: Path) -> None:
    repo = big_repo()
    total = sum(len(d) for d in repo.files.values())
    cache = tmp_path / "cache"
    mc = ModelCache(Settings(cache_dir=cache, offline=True))
    with fault_server(repo, chunk=64 * 1024, delay=0.02) as srv:
        for kill_after_bytes in (SHARD // 3, SHARD, SHARD * 3 // 2):
            proc = start(cache, srv.url)
            deadline = time.monotonic() + 60
            while srv.live_bytes < kill_after_bytes and time.monotonic() < deadline and proc.poll() is None:
                time.sleep(0.02)
            assert proc.poll() is None, proc.stderr.read().decode()
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            visible_files_are_whole(cache, repo)
            assert not mc.check("org/killme").ready
            partials = list((cache / "models--org--killme" / "blobs").glob("*.incomplete"))
            assert partials, "a killed download leaves its partial blob to resume from"
        srv.delay = 0.0
        proc = start(cache, srv.url)
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err.decode()
        assert out.decode().strip().endswith(repo.commit)
        served = srv.live_bytes
    visible_files_are_whole(cache, repo)
    assert mc.check("org/killme").ready
    # three runs together fetched the model about once, not three times
    assert served <= total * 1.15, (served, total)
    ranged = [e for e in srv.log if e.range and e.method == "GET"]
    assert ranged, "the restarted runs asked for the missing ranges only"
