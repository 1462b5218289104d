"""#14.6: a SIGKILL costs at most a few MiB per connection, whatever the model's size: progress
is recorded per file every few MiB (not per connection x chunk)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from helpers.fault_server import Repo, fault_server
from rel_helpers import blob_bytes

from modelcache import ModelCache, Settings

MiB = 1024 * 1024
CONNECTIONS = 4


def _start(cache: Path, url: str) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "MODELCACHE_"))}
    return subprocess.Popen([sys.executable, "-m", "modelcache", "--cache-dir", str(cache), "--endpoint", url,
                             "--connections", str(CONNECTIONS), "download", "org/waste", "--quiet"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_kills_waste_at_most_a_few_mib_per_connection(tmp_path: Path) -> None:
    repo = Repo("org/waste", {
        "config.json": b'{"model_type": "llama"}',
        "tokenizer.json": b'{"model": {}}',
        "model-00001-of-00002.safetensors": blob_bytes(b"one", 40 * MiB),
        "model-00002-of-00002.safetensors": blob_bytes(b"two", 24 * MiB + 5),
        "model.safetensors.index.json": b'{"weight_map": {"a": "model-00001-of-00002.safetensors", '
                                        b'"b": "model-00002-of-00002.safetensors"}}',
    })
    total = sum(len(d) for d in repo.files.values())
    cache = tmp_path / "cache"
    kills = 4
    with fault_server(repo, chunk=256 * 1024, delay=0.004) as srv:
        for i in range(1, kills + 1):
            proc = _start(cache, srv.url)
            target = total * i // (kills + 1)
            end = time.monotonic() + 60
            while srv.live_bytes < target and proc.poll() is None and time.monotonic() < end:
                time.sleep(0.005)
            assert proc.poll() is None, proc.stderr.read().decode()  # type: ignore[union-attr]
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        srv.delay = 0.0
        proc = _start(cache, srv.url)
        _out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err.decode()
        served = srv.live_bytes
    mc = ModelCache(Settings(cache_dir=cache, offline=True))
    assert mc.check("org/waste").ready
    assert all(r.ok for r in mc.verify("org/waste"))
    waste = served - total
    print(f"served {served / MiB:.1f} MiB for {total / MiB:.1f} MiB: {kills} kills wasted {waste / MiB:.1f} MiB")
    assert served <= 1.1 * total + kills * CONNECTIONS * 2 * MiB, (served, total)
