"""Model repos for the fake upstream (``fault_server.Repo``), and checking what landed in a cache.

One builder for every test folder: a model an engine could load (``config.json``, a JSON
tokenizer, weights — one ``model.safetensors`` or shards named by an index), with bytes that are
deterministic (the same seed gives the same blobs, so sizes and hashes are stable across runs).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from helpers.fault_server import Repo

from modelcache import ModelCache, Settings

__all__ = ["assert_snapshot_is", "blob_bytes", "model_repo"]


def blob_bytes(seed: bytes, size: int) -> bytes:
    """``size`` deterministic bytes from ``seed`` (a repeated sha256 block)."""
    block = hashlib.sha256(seed).digest() * 2048  # 64 KiB
    return (block * (size // len(block) + 1))[:size]


def model_repo(repo_id: str, *, weights: int = 200_000, shards: int = 0, seed: bytes = b"",
               extra: dict[str, bytes] | None = None, commit: str | None = None) -> Repo:
    """A loadable model: ``shards == 0`` → one ``model.safetensors`` of ``weights`` bytes; else
    ``shards`` files of ``weights`` bytes each and the ``model.safetensors.index.json`` naming them."""
    files: dict[str, bytes] = {
        "config.json": json.dumps({"model_type": "llama"}).encode(),
        "tokenizer.json": json.dumps({"model": {"type": "BPE"}}).encode(),
    }
    if seed:  # distinct small files too (repos that must not share blobs)
        files["config.json"] = json.dumps({"model_type": "llama", "seed": seed.hex()}).encode()
    if shards == 0:
        files["model.safetensors"] = blob_bytes(seed + repo_id.encode() + b"w", weights)
    else:
        weight_map = {}
        for i in range(shards):
            name = f"model-{i + 1:05d}-of-{shards:05d}.safetensors"
            files[name] = blob_bytes(seed + repo_id.encode() + name.encode(), weights)
            weight_map[f"w{i}"] = name
        files["model.safetensors.index.json"] = json.dumps({"weight_map": weight_map}).encode()
    files.update(extra or {})
    if commit is None:
        commit = hashlib.sha1(repo_id.encode() + seed).hexdigest()
    return Repo(repo_id, files, commit=commit)


def assert_snapshot_is(cache: Path | ModelCache, repo: Repo, *, ready: bool = True) -> None:
    """Every file of ``repo`` is in the cache's snapshot of its commit, byte for byte (and, by
    default, ``check`` says the revision is ready)."""
    mc = cache if isinstance(cache, ModelCache) else ModelCache(Settings(cache_dir=cache, offline=True))
    snap = mc.layout(repo.repo_id).snapshot(repo.commit)
    for path, data in repo.files.items():
        assert (snap / path).read_bytes() == data, path
    if ready:
        assert mc.check(repo.repo_id, repo.commit).ready
