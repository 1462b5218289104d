"""An upstream's error answer is judged by its status and headers: its body (a huge error page,
or an endless one from a hostile upstream) is never read into memory whole."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from helpers.fault_server import Faults, Repo, fault_server

from modelcache import ModelCache, Settings, TokenSource

PAGE = 256 * 1024 * 1024  # the error page the upstream offers: far more than any error needs


@pytest.mark.parametrize("small_file_bytes", [0, 1024 * 1024], ids=["ranged-path", "small-file-path"])
def test_a_huge_error_page_is_not_read(tmp_path: Path, small_file_bytes: int) -> None:
    repo = Repo("org/errpage", {"a.txt": os.urandom(100_000), "b.txt": os.urandom(100_000)}, lfs=set())
    with fault_server(repo, nodelay=True) as srv:
        srv.faults["a.txt"] = Faults(statuses=[503], error_body=PAGE)
        mc = ModelCache(Settings(cache_dir=tmp_path / "cache", endpoint=srv.url, token=TokenSource(),
                                 retry_base=0.01, retry_cap=0.1, small_file_bytes=small_file_bytes))
        mc.download(repo.repo_id)  # the 503 is retried, the file then fetched
        (page,) = [e for e in srv.log if e.status == 503]
    snap = mc.layout(repo.repo_id).snapshot(repo.commit)
    assert {p: (snap / p).read_bytes() for p in repo.files} == repo.files
    assert page.bytes_sent < PAGE // 8, f"{page.bytes_sent} bytes of an error page were read"
