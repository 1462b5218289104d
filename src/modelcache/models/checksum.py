"""The model-card checksum: one hash for everything that shapes a model's answers but its weights.

Pure functions, no I/O.

A *card file* is any file the ``tokenizer`` profile fetches (``profiles.is_tokenizer_file``):
``config.json``, ``generation_config.json``, the tokenizer files (``tokenizer.json``,
``tokenizer_config.json`` — which carries the ``chat_template`` —, ``tokenizer.model``,
``*.tiktoken``, vocab/merges, special tokens), ``chat_template.json``/``.jinja`` and processor
configs, at the top level or in a sub-folder.

The checksum is ``sha256`` over::

    modelcache-card/1\\n
    commit <40-hex commit>\\n
    <path>\\0<content id>\\n          one line per card file, sorted by path

where the content id is the Hub's own: git blob sha1 for ordinary files, sha256 for LFS files
(the blob's etag). So the same bytes at the same commit always give the same checksum, whether
it is computed from the completeness record (``trees/<commit>.json``) or by hashing the files
on disk; a changed, missing or added card file changes it.

Replica leases carry the first ``SHORT`` hex digits (64 bits): enough to tell cards apart, and
short enough for a lease holder.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from ..profiles import is_tokenizer_file

__all__ = ["CARD_FORMAT", "SHORT", "CardDrift", "card_checksum", "card_diff", "card_paths", "is_card_file", "short"]

CARD_FORMAT = "modelcache-card/1"
SHORT = 16


def is_card_file(path: str) -> bool:
    """Whether the repo path is a card file: one that the ``tokenizer`` profile fetches."""
    return is_tokenizer_file(path)


def card_paths(paths: Iterable[str]) -> list[str]:
    """The card files among ``paths``, sorted."""
    return sorted(p for p in paths if is_card_file(p))


def card_checksum(commit: str, items: Mapping[str, str | None]) -> str:
    """``items``: card path → content id (None: the file is missing, which is hashed as such)."""
    h = hashlib.sha256()
    h.update(f"{CARD_FORMAT}\ncommit {commit}\n".encode())
    for path in sorted(items):
        h.update(f"{path}\0{items[path] or 'missing'}\n".encode())
    return h.hexdigest()


def short(checksum: str) -> str:
    """The first ``SHORT`` hex digits of a card checksum, as replica leases carry it."""
    return checksum[:SHORT]


@dataclass(frozen=True)
class CardDrift:
    """One card file that differs between the record and the disk: ``changed``, ``missing`` or ``added``."""

    path: str
    kind: str  # changed | missing | added
    expected: str | None
    actual: str | None

    def to_dict(self) -> dict[str, object]:
        """JSON-ready dict: ``path``, ``kind``, and the ``expected`` and ``actual`` content ids (None: absent)."""
        return {"path": self.path, "kind": self.kind, "expected": self.expected, "actual": self.actual}

    def describe(self) -> str:
        """The drift as a phrase for messages (e.g. ``config.json is missing from the snapshot``)."""
        if self.kind == "changed":
            return f"{self.path} changed on disk (content {str(self.actual)[:12]}…, recorded {str(self.expected)[:12]}…)"
        if self.kind == "missing":
            return f"{self.path} is missing from the snapshot"
        return f"{self.path} is in the snapshot but not in the commit's file list"


def card_diff(expected: Mapping[str, str], actual: Mapping[str, str | None]) -> list[CardDrift]:
    """What differs between the recorded card files and the ones on disk (None: missing)."""
    out: list[CardDrift] = []
    for path in sorted(set(expected) | set(actual)):
        want, got = expected.get(path), actual.get(path)
        if path not in expected:
            out.append(CardDrift(path, "added", None, got))
        elif got is None:
            out.append(CardDrift(path, "missing", want, None))
        elif got != want:
            out.append(CardDrift(path, "changed", want, got))
    return out
