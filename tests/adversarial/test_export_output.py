"""``export -o FILE`` never writes through a link planted at a predictable temp name next to FILE."""

from __future__ import annotations

import os
import subprocess
import tarfile
from pathlib import Path

from helpers.live_server import import_demo
from helpers.procs import clean_env, modelcache_cmd


def test_export_never_writes_through_a_planted_partial_link(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    import_demo(cache, "org/m")
    shared = tmp_path / "shared"
    shared.mkdir()
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    os.symlink(victim, shared / "m.tar.partial")  # the name the old code wrote to
    out = shared / "m.tar"
    proc = subprocess.run(modelcache_cmd("--cache-dir", str(cache), "export", "org/m", "-o", str(out)),
                          capture_output=True, text=True, env=clean_env(), timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert victim.read_bytes() == b"precious"
    with tarfile.open(out) as tar:
        assert "modelcache-bundle.json" in tar.getnames()
    assert sorted(p.name for p in shared.iterdir()) == ["m.tar", "m.tar.partial"]  # no temp left behind
