"""Parsing raw request paths (pure, no server)."""

from __future__ import annotations

import pytest

from modelcache.protocol import FileEntry
from modelcache.server._index import CommitIndex
from modelcache.server._routes import Candidate, parse_target


def test_resolve_paths() -> None:
    t = parse_target(b"/org/name/resolve/refs%2Fpr%2F1/sub/dir/file%20name.json")
    assert (t.kind, t.repo_type) == ("resolve", "model")
    c = t.candidates[0]
    assert (c.repo_id, c.revision, c.path) == ("org/name", "refs/pr/1", "sub/dir/file name.json")

    t = parse_target(b"/gpt2/resolve/main/config.json")
    assert [(c.repo_id, c.revision, c.path) for c in t.candidates] == [("gpt2", "main", "config.json")]

    t = parse_target(b"/datasets/org/data/resolve/main/x.parquet")
    assert (t.kind, t.repo_type, t.candidates[0].repo_id) == ("resolve", "dataset", "org/data")
    assert parse_target(b"/spaces/org/app/resolve/main/app.py").repo_type == "space"
    # Unencoded ``refs/pr/N`` is taken as one revision.
    c = parse_target(b"/org/name/resolve/refs/pr/12/config.json").candidates[0]
    assert (c.revision, c.path) == ("refs/pr/12", "config.json")


def test_ambiguous_repo_ids_list_both_readings() -> None:
    # ``org/resolve`` repo or ``org`` repo at revision "resolve"? The server picks the cached one.
    t = parse_target(b"/org/resolve/resolve/main/f")
    assert [c.repo_id for c in t.candidates] == ["org/resolve", "org"]


def test_api_paths() -> None:
    t = parse_target(b"/api/models/org/name")
    assert t.kind == "api" and t.candidates[0] == Candidate("org/name", "info", ())
    c = parse_target(b"/api/datasets/org/name/revision/v1.0").candidates[0]
    assert (c.action, c.revision, c.path) == ("info", "v1.0", "")
    t = parse_target(b"/api/models/gpt2/tree/main/original%2Fsub")
    assert t.candidates[0].repo_id == "gpt2"
    assert (t.candidates[0].action, t.candidates[0].path) == ("tree", "original/sub")
    assert parse_target(b"/api/spaces/a/b/tree/main").candidates[0].revision == "main"


@pytest.mark.parametrize("raw", [b"/", b"/favicon.ico", b"/org/name", b"/api/whoami-v2", b"/%ff/resolve/main/x", b"/a/b/c/d/e"])
def test_unknown_paths(raw: bytes) -> None:
    t = parse_target(raw)
    assert t.kind in ("unknown", "api") and (t.kind == "unknown" or not t.candidates)


def test_traversal_segments_reach_validation_decoded() -> None:
    c = parse_target(b"/org/name/resolve/main/%2e%2e%2f%2e%2e%2fetc%2fpasswd").candidates[0]
    assert c.path == "../../etc/passwd"  # refused by validate_repo_path in the app
    assert parse_target(b"/healthz").kind == "health"


def _index() -> CommitIndex:
    sha = "a" * 40
    files = {p: FileEntry(p, 1, sha) for p in ("a.json", "b/c.json", "b/d/e.json", "b-x.txt", "z.txt")}
    return CommitIndex.build("c" * 40, files, True, 0.0)


def test_listing_pages_cover_everything_once() -> None:
    index = _index()
    for recursive, path, want in [
        (True, "", ["a.json", "b", "b-x.txt", "b/c.json", "b/d", "b/d/e.json", "z.txt"]),
        (False, "", ["a.json", "b", "b-x.txt", "z.txt"]),
        (True, "b", ["b/c.json", "b/d", "b/d/e.json"]),
        (False, "b", ["b/c.json", "b/d"]),
    ]:
        for limit in (1, 2, 3, 100):
            got, after, more = [], None, True
            while more:
                page, more = index.listing(path, recursive, after, limit)
                got += [e["path"] for e in page]
                after = got[-1] if page else None
                assert len(page) <= limit
            assert got == want, (recursive, path, limit)
    assert index.is_folder("b/d") and not index.is_folder("b/c.json") and index.is_folder("")
