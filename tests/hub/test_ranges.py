"""``hub/download/ranges.py``: pure byte-range arithmetic, tested directly (and by property)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from modelcache.hub.download.ranges import add_range, contiguous_prefix, merge, missing, split

ranges = st.lists(st.tuples(st.integers(0, 1000), st.integers(0, 1000)).map(lambda r: (min(r), max(r))), max_size=20)


def test_merge_joins_touching_and_overlapping_ranges_and_drops_empty_ones() -> None:
    assert merge([(5, 10), (0, 5), (20, 30), (25, 40), (50, 50)]) == [(0, 10), (20, 40)]
    assert merge([]) == []


def test_missing_is_the_complement_within_the_size() -> None:
    assert missing(100, [(0, 10), (20, 30)]) == [(10, 20), (30, 100)]
    assert missing(100, []) == [(0, 100)]
    assert missing(100, [(0, 100)]) == []
    assert missing(100, [(90, 500)]) == [(0, 90)]  # a range past the end is clipped


def test_contiguous_prefix_counts_only_from_byte_zero() -> None:
    assert contiguous_prefix([(0, 10), (10, 20), (30, 40)]) == 20
    assert contiguous_prefix([(5, 10)]) == 0
    assert contiguous_prefix([]) == 0


def test_split_cuts_into_chunks_with_a_short_last_piece() -> None:
    assert split([(0, 25)], 10) == [(0, 10), (10, 20), (20, 25)]
    assert split([(0, 0)], 10) == []
    with pytest.raises(ValueError):
        split([(0, 10)], 0)


@given(ranges, st.integers(1, 1000))
def test_done_and_missing_partition_the_file(done: list[tuple[int, int]], size: int) -> None:
    covered = set()
    for a, b in merge(done):
        covered.update(range(max(0, a), min(b, size)))
    gaps = set()
    for a, b in missing(size, done):
        gaps.update(range(a, b))
    assert covered.isdisjoint(gaps) and covered | gaps == set(range(size))


@given(ranges, st.integers(1, 64))
def test_split_covers_exactly_what_it_was_given(given_ranges: list[tuple[int, int]], chunk: int) -> None:
    pieces = split(merge(given_ranges), chunk)
    assert all(0 < b - a <= chunk for a, b in pieces)
    assert merge(pieces) == merge(given_ranges)


@given(ranges, st.tuples(st.integers(0, 1000), st.integers(0, 1000)))
def test_add_range_is_merge_with_one_more(done: list[tuple[int, int]], r: tuple[int, int]) -> None:
    r = (min(r), max(r))
    out = add_range(merge(done), r)
    assert out == merge([*done, r])
    assert all(out[i][1] < out[i + 1][0] for i in range(len(out) - 1))  # sorted, disjoint, not touching
