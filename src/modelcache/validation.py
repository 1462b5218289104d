"""Validation of everything that names a thing: repo ids, revisions, repo types, repo paths.

Pure functions, no I/O. Every input from a user or a server passes through here before it
touches a path or a URL, so nothing can name a place outside the cache.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import InvalidInput

__all__ = [
    "REPO_TYPES",
    "RepoRef",
    "is_commit",
    "parse_repo_ref",
    "validate_repo_id",
    "validate_repo_path",
    "validate_repo_type",
    "validate_revision",
]

REPO_TYPES = ("model", "dataset", "space")
_NAME = re.compile(r"^[A-Za-z0-9_.\-]{1,96}$")
_COMMIT = re.compile(r"^[0-9a-f]{40}$")
_REV_CHARS = re.compile(r"^[A-Za-z0-9._\-/]{1,255}$")


def validate_repo_type(repo_type: str) -> str:
    """``repo_type`` unchanged when it is one of ``REPO_TYPES``; else raises ``InvalidInput``."""
    if repo_type not in REPO_TYPES:
        raise InvalidInput(
            f"invalid repo type {repo_type!r}",
            f"use one of: {', '.join(REPO_TYPES)}",
        )
    return repo_type


def validate_repo_id(repo_id: str) -> str:
    """Return ``repo_id`` if it is ``name`` or ``namespace/name`` as the Hub allows, else raise."""
    hint = "a repo id looks like 'org/name' (letters, digits, '-', '_', '.'), e.g. 'Qwen/Qwen3-32B'"
    if not isinstance(repo_id, str) or not repo_id:
        raise InvalidInput("invalid repo id: empty", hint)
    parts = repo_id.split("/")
    if len(parts) > 2:
        raise InvalidInput(f"invalid repo id {repo_id!r}: more than one '/'", hint)
    for part in parts:
        if not _NAME.fullmatch(part):
            raise InvalidInput(f"invalid repo id {repo_id!r}: bad characters or length", hint)
        if part.startswith(("-", ".")) or part.endswith(("-", ".")):
            raise InvalidInput(f"invalid repo id {repo_id!r}: a part starts or ends with '-' or '.'", hint)
        if "--" in part or ".." in part:
            raise InvalidInput(f"invalid repo id {repo_id!r}: '--' and '..' are not allowed", hint)
    return repo_id


def is_commit(revision: str) -> bool:
    """True for a full 40-hex commit id."""
    return isinstance(revision, str) and bool(_COMMIT.fullmatch(revision))


def validate_revision(revision: str) -> str:
    """A branch, tag, ``refs/pr/N`` or 40-hex commit; never anything that could leave ``refs/``."""
    hint = "use a branch or tag name such as 'main', 'refs/pr/1', or a 40-character commit id"
    if not isinstance(revision, str) or not revision:
        raise InvalidInput("invalid revision: empty", hint)
    if not _REV_CHARS.fullmatch(revision):
        raise InvalidInput(f"invalid revision {revision!r}: bad characters or length", hint)
    parts = revision.split("/")
    if any(p in ("", ".", "..") for p in parts) or any(p.startswith(".") for p in parts):
        raise InvalidInput(f"invalid revision {revision!r}: empty, '.' or '..' path part", hint)
    if revision.endswith(".lock"):
        raise InvalidInput(f"invalid revision {revision!r}: may not end with '.lock'", hint)
    return revision


def validate_repo_path(path: str) -> str:
    """A file path inside a repo: relative, '/'-separated, no '.', '..' or empty parts."""
    hint = "the upstream or the request named a path that could leave the repository; refusing it"
    if not isinstance(path, str) or not path or len(path) > 1024:
        raise InvalidInput(f"invalid path in repo: {path!r}", hint)
    if "\\" in path or "\x00" in path or path.startswith("/") or re.match(r"^[A-Za-z]:", path):
        raise InvalidInput(f"invalid path in repo: {path!r}", hint)
    if any(ord(c) < 32 for c in path):
        raise InvalidInput(f"invalid path in repo: {path!r} (control character)", hint)
    if any(p in ("", ".", "..") for p in path.split("/")):
        raise InvalidInput(f"invalid path in repo: {path!r}", hint)
    return path


@dataclass(frozen=True)
class RepoRef:
    """``REPO_ID[@REV]`` as users type it on the command line."""

    repo_id: str
    revision: str | None = None

    def __str__(self) -> str:
        return f"{self.repo_id}@{self.revision}" if self.revision else self.repo_id


def parse_repo_ref(text: str) -> RepoRef:
    """``org/name[@revision]`` as a ``RepoRef``. Raises ``InvalidInput`` for a bad repo id or revision."""
    repo_id, sep, rev = text.partition("@")
    validate_repo_id(repo_id)
    if sep:
        validate_revision(rev)
        return RepoRef(repo_id, rev)
    return RepoRef(repo_id)
