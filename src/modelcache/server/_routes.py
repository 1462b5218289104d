"""Parsing a request's raw path into what it asks for. Pure functions, no I/O.

The HF client percent-encodes a revision as one segment (``refs%2Fpr%2F1``) and sends file
paths with real ``/``, so the raw path is split on ``/`` first and every segment decoded
after. A repo id is ``name`` or ``org/name``; when both readings fit, the caller picks the
one that exists in the cache (``Target.candidates`` lists them in order of preference).
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote

__all__ = ["Candidate", "Target", "parse_target"]

_TYPE_PREFIX = {"datasets": "dataset", "spaces": "space"}
_API_PREFIX = {"models": "model", "datasets": "dataset", "spaces": "space"}
_API_ACTIONS = ("revision", "tree")


@dataclass(frozen=True)
class Candidate:
    """One reading of the path: a repo id, an action and the decoded segments after it."""

    repo_id: str
    action: str  # "info", "tree" or "resolve"
    rest: tuple[str, ...]

    @property
    def revision(self) -> str:
        """The revision named by ``rest`` (``main`` when absent)."""
        return _split_revision(self.rest)[0]

    @property
    def path(self) -> str:
        """The in-repo path after the revision, ``/``-joined ("" when absent)."""
        return _split_revision(self.rest)[1]


@dataclass(frozen=True)
class Target:
    """What a request path asks for: its kind and, for the API and ``resolve``, the repos it may name."""

    kind: str  # "health", "api" (info/tree) or "resolve"; "unknown" otherwise
    repo_type: str = "model"
    candidates: tuple[Candidate, ...] = ()


def _split_revision(rest: tuple[str, ...]) -> tuple[str, str]:
    if not rest:
        return "main", ""
    rev, tail = rest[0], rest[1:]
    # ``refs/pr/1`` sent without encoding: take the three segments as one revision.
    if rev == "refs" and len(tail) >= 2:
        rev, tail = "/".join((rev, *tail[:2])), tail[2:]
    return rev, "/".join(tail)


def _segments(raw_path: bytes) -> list[str] | None:
    try:
        text = raw_path.decode("ascii")
    except UnicodeDecodeError:
        return None
    parts = text.split("/")
    if parts and parts[0] == "":
        parts = parts[1:]
    try:
        return [unquote(p, errors="strict") for p in parts]
    except UnicodeDecodeError:
        return None


def _candidates(segs: list[str], actions: tuple[str, ...], allow_bare: bool) -> tuple[Candidate, ...]:
    out: list[Candidate] = []
    for n in (2, 1):
        if len(segs) > n and segs[n] in actions:
            out.append(Candidate("/".join(segs[:n]), segs[n], tuple(segs[n + 1 :])))
        elif allow_bare and len(segs) == n:
            out.append(Candidate("/".join(segs[:n]), "info", ()))
    return tuple(out)


def parse_target(raw_path: bytes) -> Target:
    """What a request for ``raw_path`` (no query string) asks for."""
    segs = _segments(raw_path)
    if segs is None:
        return Target("unknown")
    if segs == ["healthz"]:
        return Target("health")
    if len(segs) >= 2 and segs[0] == "api" and segs[1] in _API_PREFIX:
        rest = segs[2:]
        cands = _candidates(rest, _API_ACTIONS, allow_bare=True)
        # ``/revision/{rev}`` is the info call at a revision; normalise it to "info".
        cands = tuple(
            Candidate(c.repo_id, "info", c.rest) if c.action == "revision" else c for c in cands
        )
        return Target("api", _API_PREFIX[segs[1]], cands)
    repo_type = "model"
    if segs and segs[0] in _TYPE_PREFIX:
        repo_type, segs = _TYPE_PREFIX[segs[0]], segs[1:]
    cands = _candidates(segs, ("resolve",), allow_bare=False)
    if not cands:
        return Target("unknown")
    return Target("resolve", repo_type, cands)
