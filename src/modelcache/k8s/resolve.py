"""The only network part of ``render``: pin the revision to a commit and size the volume.

No network at all when the revision is already a commit and the size is given; ``--offline``
refuses anything that would need it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from ..protocol import FileEntry
from ..errors import InvalidInput
from ..profiles import select
from ..validation import is_commit, validate_repo_id, validate_revision
from .sizing import parse_quantity, volume_size_for

__all__ = ["Resolved", "resolve"]


class _Hub(Protocol):
    def revision_info(self, repo_type: str, repo_id: str, revision: str): ...  # type: ignore[no-untyped-def]

    def list_files(self, repo_type: str, repo_id: str, commit: str) -> list[FileEntry]: ...


@dataclass(frozen=True)
class Resolved:
    """The revision pinned to a commit, and the volume size in bytes."""

    commit: str
    size_bytes: int
    """What the volume asks for."""
    model_bytes: int | None
    """The files the profile downloads, when looked up (``--size auto``)."""


def resolve(repo_id: str, revision: str, size: str, profile: str, *, offline: bool,
            hub: _Hub | None) -> Resolved:
    """``hub`` is called only when needed: a branch/tag to pin, or ``--size auto``."""
    if any(ord(c) < 33 or ord(c) > 126 for c in repo_id + revision):
        raise InvalidInput("invalid repo id or revision: spaces or control characters",
                           "a repo id looks like 'org/name'; a revision like 'main' or a commit id")
    validate_repo_id(repo_id)
    validate_revision(revision)
    auto = size.strip().lower() == "auto"
    given = None if auto else parse_quantity(size)
    needs_network = auto or not is_commit(revision)
    if needs_network and offline:
        if auto:
            raise InvalidInput("--size auto looks the model up on the Hub, and --offline forbids it",
                               "give --size (e.g. --size 100Gi) and --revision as a 40-character commit")
        raise InvalidInput(f"--offline cannot pin revision {revision!r} to a commit",
                           "give --revision as a 40-character commit id")
    if not needs_network:
        assert given is not None
        return Resolved(revision, given, None)
    if hub is None:  # pragma: no cover - the CLI always passes one
        raise InvalidInput("no Hub client to resolve the revision", "give --revision as a commit and --size")
    commit = revision if is_commit(revision) else hub.revision_info("model", repo_id, revision).commit
    if not auto:
        assert given is not None
        return Resolved(commit, given, None)
    files = {f.path: f for f in hub.list_files("model", repo_id, commit)}
    wanted = select(files, profile)
    model_bytes = sum(files[p].size for p in wanted)
    return Resolved(commit, volume_size_for(model_bytes), model_bytes)
