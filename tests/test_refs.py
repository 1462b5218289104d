from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from modelcache.errors import InvalidInput
from modelcache.validation import parse_repo_ref, validate_repo_id, validate_repo_path, validate_revision


@pytest.mark.parametrize("good", ["gpt2", "Qwen/Qwen3-32B", "meta-llama/Llama-3.3-70B-Instruct", "a_b/c.d", "x/y-1.5"])
def test_valid_repo_ids(good: str) -> None:
    assert validate_repo_id(good) == good


@pytest.mark.parametrize("bad", ["", "../x", "a/b/c", "has space/x", "a/..", "a--b/c", "-a/b", "a/b.", "a/", "/a", "a//b", "ü/x"])
def test_invalid_repo_ids(bad: str) -> None:
    with pytest.raises(InvalidInput) as err:
        validate_repo_id(bad)
    assert err.value.hint


@pytest.mark.parametrize("good", ["main", "v1.0", "refs/pr/1", "a" * 40, "release/2024-01"])
def test_valid_revisions(good: str) -> None:
    assert validate_revision(good) == good


@pytest.mark.parametrize("bad", ["", "..", "../main", "refs/../../x", "/abs", "a//b", "x.lock", "sp ace", ".hidden", "a\\b"])
def test_invalid_revisions(bad: str) -> None:
    with pytest.raises(InvalidInput):
        validate_revision(bad)


@pytest.mark.parametrize("bad", ["", "/etc/passwd", "../x", "a/../b", "a/./b", "a//b", "a\\b", "C:x", "a\x00b", "a\nb"])
def test_invalid_repo_paths(bad: str) -> None:
    with pytest.raises(InvalidInput):
        validate_repo_path(bad)


def test_parse_repo_ref() -> None:
    assert parse_repo_ref("org/m@refs/pr/2").revision == "refs/pr/2"
    assert parse_repo_ref("org/m").revision is None
    with pytest.raises(InvalidInput):
        parse_repo_ref("org/m@")


@given(st.text(max_size=60))
def test_validated_paths_never_escape(text: str) -> None:
    import posixpath

    try:
        validate_repo_path(text)
    except InvalidInput:
        return
    joined = posixpath.normpath(posixpath.join("/cache/snap", text))
    assert joined.startswith("/cache/snap/")


@given(st.text(max_size=60))
def test_validated_revisions_stay_under_refs(text: str) -> None:
    import posixpath

    try:
        validate_revision(text)
    except InvalidInput:
        return
    assert posixpath.normpath(posixpath.join("/r/refs", text)).startswith("/r/refs/")
