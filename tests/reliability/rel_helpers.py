"""Shared bits of the reliability tests: a model, a child download process, blob facts."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

from helpers.fault_server import Repo, fault_server
from helpers.repos import blob_bytes  # re-exported for the reliability tests

CHILD = r"""
import sys
from pathlib import Path
from modelcache import ModelCache, Settings
cache, url, stale, conns, chunk = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
s = Settings(cache_dir=Path(cache), endpoint=url, lock_stale_after=stale, connections=conns, chunk_size=chunk,
             checkpoint_bytes=256 * 1024, timeout=20)
res = ModelCache(s).download(sys.argv[6])
print(res.commit)
"""



def model(repo_id: str, size: int) -> Repo:
    return Repo(repo_id, {
        "config.json": b'{"model_type": "llama"}',
        "tokenizer.json": b'{"model": {}}',
        "model.safetensors": blob_bytes(repo_id.encode(), size),
    })


def child(cache: Path, url: str, repo_id: str, *, stale: float = 30.0, connections: int = 2,
          chunk: int = 8 * 1024 * 1024) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    return subprocess.Popen([sys.executable, "-c", CHILD, str(cache), url, str(stale), str(connections), str(chunk),
                             repo_id], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for piece in iter(lambda: fh.read(1 << 20), b""):
            h.update(piece)
    return h.hexdigest()


def quick_fault_server(repo: Repo, **kw: object):  # type: ignore[no-untyped-def]
    """``fault_server`` with Nagle off: no 40 ms delayed-ACK stall per request (many short runs)."""
    return fault_server(repo, nodelay=True, **kw)
