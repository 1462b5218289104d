"""Planted links at our own state folders never make a reader (``check``) write outside the cache."""

from __future__ import annotations

import os
from pathlib import Path

from helpers.live_server import import_demo

from modelcache.cache import loadable
from modelcache.cache.layout import RepoLayout
from modelcache.cache.readiness import check_revision
from modelcache.files import confined_rmtree

REPO = "org/m"


def _listing(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def _setup(tmp_path: Path) -> tuple[Path, RepoLayout, str, Path]:
    cache = tmp_path / "cache"
    record = import_demo(cache, REPO)
    layout = RepoLayout(cache, "model", REPO)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "victim").write_bytes(b"precious")
    loadable._PARSED.clear()  # a fresh process: the verdicts on disk are what is consulted
    return cache, layout, record.commit, outside


def test_check_never_writes_verdicts_through_a_planted_parsed_link(tmp_path: Path) -> None:
    cache, layout, commit, outside = _setup(tmp_path)
    confined_rmtree(layout.state / "parsed", cache)
    os.symlink(outside, layout.state / "parsed")
    before = _listing(outside)
    result = check_revision(layout, "main", "full")
    assert result.ready
    assert _listing(outside) == before, "check created files through a planted .modelcache/parsed link"


def test_check_never_creates_folders_through_a_planted_state_link(tmp_path: Path) -> None:
    cache, layout, commit, outside = _setup(tmp_path)
    confined_rmtree(layout.state, cache)
    os.symlink(outside, layout.state)
    before = _listing(outside)
    check_revision(layout, "main", "full")
    assert _listing(outside) == before, "check created folders/files through a planted .modelcache link"
