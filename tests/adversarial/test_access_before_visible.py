"""A private/gated repo is never visible before its access record: a SIGKILL between
"files/record/ref written" and "access.json written" must not leave it public to ``serve``."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import httpx
from helpers.live_server import DEMO_MODEL, live_server

from modelcache.cache.access import read_access
from modelcache.cache.layout import RepoLayout

REPO = "org/secret"


def _run_killed(code: str) -> None:
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, timeout=60)
    assert proc.returncode == -9, proc.stderr.decode()


def _assert_private(cache: Path, commit: str) -> None:
    layout = RepoLayout(cache, "model", REPO)
    assert read_access(layout).private, "killed mid-publish: the repo is left without its access record"
    with live_server(cache) as url:
        for path in (f"/api/models/{REPO}/revision/{commit}", f"/{REPO}/resolve/{commit}/config.json",
                     f"/api/models/{REPO}/revision/main"):
            r = httpx.get(url + path)
            assert r.status_code == 404 and r.headers.get("x-error-code") == "RepoNotFound", (path, r.status_code)


def test_download_killed_after_ref_before_access_keeps_private(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    _run_killed(f"""
        import os, signal
        from pathlib import Path
        from modelcache.cache.importer import plan_import, commit_id_for
        from modelcache.cache.layout import RepoLayout
        from modelcache.cache.records import TreeRecord
        from modelcache.cache import access
        from modelcache.hub.client import RevisionInfo
        from modelcache.service import remote
        items = plan_import(Path({str(DEMO_MODEL)!r}))
        record = TreeRecord.of(commit_id_for([i.entry for i in items]), [i.entry for i in items])
        print(record.commit)
        layout = RepoLayout(Path({str(cache)!r}), "model", {REPO!r})
        real_write_access = remote.write_access
        def killed_at_access(layout, acc):
            if not os.path.exists(layout.ref("main")):
                return real_write_access(layout, acc)   # written before anything is visible: fine
            os.kill(os.getpid(), signal.SIGKILL)        # the ref is out, the access record not yet
        remote.write_access = killed_at_access
        info = RevisionInfo({REPO!r}, "main", record.commit, gated=True, private=True)
        remote.record_revision(layout, info, record, ["main"])
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    layout = RepoLayout(cache, "model", REPO)
    commit = layout.read_ref("main")
    assert commit
    _assert_private(cache, commit)


def test_import_private_killed_before_access_keeps_private(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    _run_killed(f"""
        import os, signal
        from pathlib import Path
        from modelcache.cache.access import Access
        from modelcache.service import model_cache
        from modelcache.settings import Settings
        real_write_access = model_cache.write_access
        def killed_at_access(layout, acc):
            if not os.path.exists(layout.ref("main")):
                return real_write_access(layout, acc)
            os.kill(os.getpid(), signal.SIGKILL)
        model_cache.write_access = killed_at_access
        mc = model_cache.ModelCache(Settings(cache_dir=Path({str(cache)!r})))
        mc.import_folder(Path({str(DEMO_MODEL)!r}), {REPO!r}, access=Access(gated=True, private=True))
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    layout = RepoLayout(cache, "model", REPO)
    commit = layout.read_ref("main")
    assert commit
    _assert_private(cache, commit)
