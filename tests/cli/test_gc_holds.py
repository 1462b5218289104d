"""GC's holds from outside the cache fail closed: an unreadable registry removes nothing."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from modelcache import ModelCache, Settings
from modelcache.cache.layout import root_state
from modelcache.cache.usage import record_use
from modelcache.cli.main import cli

REPO = "org/demo"


def run(*args: str) -> tuple[int, str, str]:
    res = CliRunner().invoke(cli, list(args), obj={}, env={}, catch_exceptions=False)
    return res.exit_code, res.stdout, res.stderr


@pytest.mark.parametrize("junk", ["text", "fifo", "link"])
def test_unreadable_registry_stops_gc(tmp_path: Path, demo_model: Path, junk: str) -> None:
    cache = tmp_path / "c"
    mc = ModelCache(Settings(cache_dir=cache))
    commit = mc.import_folder(demo_model, REPO).commit
    record_use(mc.layout(REPO), commit, time.time() - 90 * 86400)
    registry = root_state(cache) / "models.json"
    registry.parent.mkdir(parents=True, exist_ok=True)
    if junk == "text":
        registry.write_text('{"format_version": 1, "models": [{"name": ')
    elif junk == "fifo":
        os.mkfifo(registry)
    else:
        (tmp_path / "elsewhere.json").write_text('{"models": []}')
        registry.symlink_to(tmp_path / "elsewhere.json")
    result: list[tuple[int, str, str]] = []
    t = threading.Thread(target=lambda: result.append(run("--cache-dir", str(cache), "gc", "--max-age", "1d")),
                         daemon=True)
    t.start()
    t.join(20)
    assert result, "gc blocked on the registry"
    code, out, err = result[0]
    assert code == 7 and "model registry" in err and "hint:" in err
    assert mc.check(REPO, record=False).ready
