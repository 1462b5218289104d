"""What each profile needs: pure rules over file paths, shared by ``download`` and ``check``.

- ``tokenizer``: what a frontend (tokenizer, chat template, request validation) needs —
  ``config.json``, the tokenizer, generation and chat-template files; no weights.
- ``full``: every file of the commit (after ``--include``/``--exclude``).
"""

from __future__ import annotations

import fnmatch
import posixpath
from collections.abc import Iterable, Sequence

from .errors import InvalidInput

__all__ = [
    "PROFILES",
    "TOKENIZER_FILES",
    "filter_paths",
    "is_tokenizer_file",
    "select",
    "tokenizer_loadable",
    "validate_profile",
    "weight_files",
]

PROFILES = ("full", "tokenizer")

# Top-level or nested (e.g. ``tokenizer/``) files that a tokenizer/frontend loads.
TOKENIZER_FILES = (
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "tokenizer.model",
    "tiktoken.model",
    "*.tiktoken",
    "vocab.json",
    "vocab.txt",
    "merges.txt",
    "chat_template.json",
    "chat_template.jinja",
    "*.jinja",  # e.g. additional_chat_templates/tool_use.jinja
    "preprocessor_config.json",
    "processor_config.json",
)
# Files that make a tokenizer loadable on their own (DESIGN.md "Runtime detection").
_LOADABLE = ("tokenizer.json", "tiktoken.model", "*.tiktoken", "tokenizer.model")


def validate_profile(profile: str) -> str:
    if profile not in PROFILES:
        raise InvalidInput(f"invalid profile {profile!r}", f"use one of: {', '.join(PROFILES)}")
    return profile


def _name_matches(path: str, patterns: Sequence[str]) -> bool:
    name = posixpath.basename(path)
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


def is_tokenizer_file(path: str) -> bool:
    return _name_matches(path, TOKENIZER_FILES)


def filter_paths(paths: Iterable[str], include: Sequence[str] = (), exclude: Sequence[str] = ()) -> list[str]:
    """huggingface_hub's ``allow_patterns``/``ignore_patterns`` semantics (fnmatch on the full path;
    a pattern ending in ``/`` matches everything below that folder)."""

    def norm(p: str) -> str:
        return p + "*" if p.endswith("/") else p

    inc = [norm(p) for p in include]
    exc = [norm(p) for p in exclude]
    out = []
    for path in paths:
        if inc and not any(fnmatch.fnmatch(path, p) for p in inc):
            continue
        if exc and any(fnmatch.fnmatch(path, p) for p in exc):
            continue
        out.append(path)
    return out


def select(paths: Iterable[str], profile: str, include: Sequence[str] = (), exclude: Sequence[str] = ()) -> list[str]:
    """The files of a commit that a profile fetches."""
    validate_profile(profile)
    chosen = filter_paths(paths, include, exclude)
    if profile == "tokenizer":
        chosen = [p for p in chosen if is_tokenizer_file(p)]
    return sorted(chosen)


def tokenizer_loadable(paths: Iterable[str]) -> bool:
    return any(_name_matches(p, _LOADABLE) and "/" not in p for p in paths)


def weight_files(paths: Iterable[str], index_weight_maps: dict[str, Iterable[str]]) -> set[str] | None:
    """The weight files an engine loads, or None when the commit has no recognisable weights.

    ``index_weight_maps`` maps each ``*.index.json`` path to the shard names in its weight map.
    """
    paths = set(paths)
    for single in ("model.safetensors", "pytorch_model.bin"):
        if single in paths:
            return {single}
    shards: set[str] = set()
    for index_path, names in index_weight_maps.items():
        folder = posixpath.dirname(index_path)
        shards.update(posixpath.join(folder, n) if folder else n for n in names)
    if shards:
        return shards
    weights = {p for p in paths if p.endswith((".safetensors", ".bin", ".gguf", ".pt", ".pth")) and "/" not in p}
    return weights or None
