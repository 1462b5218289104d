"""#14.7: the free-space pre-check counts what a partial really holds on disk (its allocated
blocks), not its apparent size: a sparse partial (holes where a disk-full run stopped) does not
let a rerun pass the check and fill the disk again."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from helpers.fault_server import fault_server
from rel_helpers import model

from modelcache import ModelCache, Settings
from modelcache.errors import CacheError
from modelcache.hub.download.partial import resumable_in_place, state_path_for, writer_identity


def test_sparse_partial_does_not_count_as_downloaded(tmp_path: Path) -> None:
    repo = model("org/sparse", 1000)
    cache = tmp_path / "cache"
    cache.mkdir()
    free = shutil.disk_usage(cache).free
    size = free + 2 * 1024**3  # more than the disk can hold
    sha = "ab" * 32
    with fault_server(repo) as srv:
        srv.tree_override = [
            {"type": "file", "path": "config.json", "size": 23, "oid": "1" * 40},
            {"type": "file", "path": "model.safetensors", "size": size, "oid": "2" * 40,
             "lfs": {"oid": sha, "size": size, "pointerSize": 130}},
        ]
        mc = ModelCache(Settings(cache_dir=cache, endpoint=srv.url))
        layout = mc.layout(repo.repo_id)
        layout.blobs.mkdir(parents=True)
        with open(layout.partial(sha), "wb") as fh:
            fh.truncate(size)  # apparent size: all of it; allocated: nothing
        st = os.stat(layout.partial(sha))
        if st.st_blocks * 512 >= 1024**2:
            pytest.skip("this filesystem does not make sparse files")
        # as a writer leaves it (shared + private name), with a state that would resume it in
        # place (its writer is gone) and claims every byte
        private = f"{sha}.0123456789ab.w.incomplete"
        os.link(layout.partial(sha), layout.blobs / private)
        state_path_for(layout.partial(sha)).write_text(json.dumps({
            "etag": sha, "size": size, "ino": st.st_ino, "dev": st.st_dev, "done": [[0, size]],
            "private": private, "writer": {**writer_identity(), "pid": 999_999_999}}))
        assert resumable_in_place(layout.partial(sha), sha, size) == 0  # holds nothing on disk
        with pytest.raises(CacheError) as exc:
            mc.download(repo.repo_id, profile="full")
        assert "free" in exc.value.message
        assert not [e for e in srv.log if "/resolve/" in e.path]  # refused before any byte moved
