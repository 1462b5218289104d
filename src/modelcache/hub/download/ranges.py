"""Byte-range planning for one file: what is done, what is missing, how to split it. Pure.

Ranges are half-open ``(start, end)`` tuples. ``done`` lists are kept merged and sorted.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["add_range", "content_range", "contiguous_prefix", "header_int", "merge", "missing",
           "split"]


Range = tuple[int, int]


def merge(ranges: Iterable[Range]) -> list[Range]:
    """The ranges sorted, with overlapping or touching ones joined and empty ones dropped."""
    out: list[Range] = []
    for a, b in sorted(r for r in ranges if r[1] > r[0]):
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def add_range(done: list[Range], r: Range) -> list[Range]:
    """``done`` with ``r`` added, merged (a new list; ``done`` is left as it is)."""
    return merge([*done, r])


def missing(size: int, done: Iterable[Range]) -> list[Range]:
    """The gaps of ``done`` in ``[0, size)``, in order (parts of ``done`` beyond ``size`` are ignored)."""
    out: list[Range] = []
    pos = 0
    for a, b in merge(done):
        a, b = max(0, min(a, size)), max(0, min(b, size))
        if a > pos:
            out.append((pos, a))
        pos = max(pos, b)
    if pos < size:
        out.append((pos, size))
    return out


def contiguous_prefix(done: Iterable[Range]) -> int:
    """How many bytes from offset 0 are done without a gap (0 when byte 0 is not done)."""
    merged = merge(done)
    return merged[0][1] if merged and merged[0][0] == 0 else 0


def split(ranges: Iterable[Range], chunk: int) -> list[Range]:
    """Cut ranges into pieces of at most ``chunk`` bytes (the last piece of a range may be short)."""
    if chunk <= 0:
        raise ValueError("chunk size must be positive")
    out: list[Range] = []
    for a, b in ranges:
        while a < b:
            out.append((a, min(b, a + chunk)))
            a += chunk
    return out


def header_int(value: str | None) -> int | None:
    """An integer header (``Content-Length``), or None when absent or malformed."""
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def content_range(value: str | None, size: int) -> tuple[int, int] | None:
    """``bytes a-b/N`` → ``(a, b + 1)`` when N is the expected size; None otherwise."""
    if not value or not value.startswith("bytes "):
        return None
    span, _, total = value[6:].partition("/")
    a, _, b = span.partition("-")
    try:
        if total != "*" and int(total) != size:
            return None
        return int(a), int(b) + 1
    except ValueError:
        return None
