"""#14.1: a downloader SIGSTOPped past the lock's staleness window never writes into the blob
that the process which took its lock over published; it stops early and links that blob."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from helpers.fault_server import fault_server
from rel_helpers import child, model, sha256_of

from modelcache import ModelCache, Settings
from modelcache.hub.download.partial import state_path_for

SIZE = 24 * 1024 * 1024


def _wait(cond, timeout: float = 60.0) -> None:  # type: ignore[no-untyped-def]
    end = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.02)


def test_sigstopped_holder_never_writes_into_the_published_blob(tmp_path: Path) -> None:
    repo = model("org/stale", SIZE)
    cache = tmp_path / "cache"
    mc = ModelCache(Settings(cache_dir=cache, offline=True))
    layout = mc.layout(repo.repo_id)
    etag = repo.etag("model.safetensors")
    blob, partial = layout.blob(etag), layout.partial(etag)
    with fault_server(repo, chunk=64 * 1024, delay=0.01) as srv:
        a = child(cache, srv.url, repo.repo_id, stale=1.0, connections=1, chunk=4 * 1024 * 1024)
        try:
            # A has written and recorded a few MiB: freeze it mid-stream
            _wait(lambda: state_path_for(partial).exists() and srv.live_bytes >= 3 * 1024 * 1024
                  or a.poll() is not None)
            assert a.poll() is None, a.stderr.read().decode()  # type: ignore[union-attr]
            os.kill(a.pid, signal.SIGSTOP)
            srv.delay = 0.0
            b = child(cache, srv.url, repo.repo_id, stale=1.0, connections=2, chunk=4 * 1024 * 1024)
            out, err = b.communicate(timeout=120)
            assert b.returncode == 0, err.decode()
            st = os.stat(blob)
            digest = sha256_of(blob)
            assert digest == etag
        finally:
            os.kill(a.pid, signal.SIGCONT)
        out, err = a.communicate(timeout=120)
        assert a.returncode == 0, err.decode()  # the loser stopped, waited, and linked B's blob
        served = srv.live_bytes
    after = os.stat(blob)
    # the published inode was never written again: same inode, same mtime, same content
    assert (after.st_ino, after.st_mtime_ns, after.st_size) == (st.st_ino, st.st_mtime_ns, st.st_size)
    assert sha256_of(blob) == etag
    assert all(r.ok for r in mc.verify(repo.repo_id))
    assert mc.check(repo.repo_id).ready
    leftovers = sorted(p.name for p in layout.blobs.iterdir() if p.name != etag)
    assert not partial.exists() and not state_path_for(partial).exists(), leftovers
    print(f"served {served / SIZE:.2f}x the file")
    # B resumed A's bytes (copied, not refetched) and A stopped early: not ~2x the file
    assert served <= SIZE * 1.2, (served, SIZE)
