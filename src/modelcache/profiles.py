"""What each profile needs: pure rules over file paths, shared by ``download`` and ``check``.

- ``tokenizer``: what a frontend (tokenizer, chat template, request validation) needs —
  ``config.json``, the tokenizer, generation and chat-template files; no weights.
- ``full``: every file of the commit (after ``--include``/``--exclude``).

What makes a revision *loadable* (``cache/readiness.py``): ``config.json``, a tokenizer
(``tokenizer.json``, ``tiktoken.model`` or ``*.tiktoken``) and, for ``full``, the weights by
their standard names (``weight_source``); other formats only when asked (``ACCEPT``).
"""

from __future__ import annotations

import fnmatch
import posixpath
from collections.abc import Iterable, Sequence

from .errors import InvalidInput

__all__ = [
    "ACCEPT",
    "PROFILES",
    "STANDARD_WEIGHTS",
    "TOKENIZERS",
    "config_candidates",
    "TOKENIZER_FILES",
    "filter_paths",
    "is_tokenizer_file",
    "select",
    "tokenizer_candidates",
    "tokenizer_loadable",
    "validate_accept",
    "validate_profile",
    "weight_source",
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


def validate_profile(profile: str) -> str:
    """``profile`` unchanged when it is a known profile; else raises ``InvalidInput``."""
    if profile not in PROFILES:
        raise InvalidInput(f"invalid profile {profile!r}", f"use one of: {', '.join(PROFILES)}")
    return profile


def _name_matches(path: str, patterns: Sequence[str]) -> bool:
    name = posixpath.basename(path)
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


def is_tokenizer_file(path: str) -> bool:
    """True when ``path`` names a file the tokenizer profile needs (by its file name)."""
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


ACCEPT = ("gguf", "consolidated", "adapter", "sentencepiece")
"""Formats that count as loadable only when asked for (``check --accept``):

- ``gguf``: a top-level ``*.gguf`` is the weights, and carries its own config and tokenizer;
- ``consolidated``: Mistral's native ``consolidated*.safetensors`` / ``consolidated.*.pth`` (all of them),
  with ``params.json`` as the config and ``tekken.json`` as a tokenizer;
- ``adapter``: a LoRA ``adapter_model.safetensors`` / ``adapter_model.bin`` with ``adapter_config.json``
  (no tokenizer needed: the base model has one);
- ``sentencepiece``: ``tokenizer.model`` counts as a loadable tokenizer.
"""

# transformers' order: model.safetensors, its index, pytorch_model.bin, its index
STANDARD_WEIGHTS = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                    "pytorch_model.bin.index.json")
TOKENIZERS = ("tokenizer.json", "tiktoken.model", "*.tiktoken")


def validate_accept(values: Iterable[str]) -> tuple[str, ...]:
    """The ``--accept`` values, checked; deduplicated in their given order."""
    out: list[str] = []
    for v in values:
        if v not in ACCEPT:
            raise InvalidInput(f"invalid --accept {v!r}", f"use one of: {', '.join(ACCEPT)}")
        if v not in out:
            out.append(v)
    return tuple(out)


def tokenizer_loadable(paths: Iterable[str], accept: Sequence[str] = ()) -> bool:
    """Is one of the loadable tokenizer files among ``paths`` (top level)?"""
    return bool(tokenizer_candidates(paths, accept))


def tokenizer_candidates(paths: Iterable[str], accept: Sequence[str] = ()) -> list[str]:
    """Top-level files that make a tokenizer loadable, best first."""
    names = list(TOKENIZERS)
    if "sentencepiece" in accept:
        names.append("tokenizer.model")
    if "consolidated" in accept:
        names.append("tekken.json")
    top = sorted(p for p in paths if "/" not in p)
    return [p for pat in names for p in top if fnmatch.fnmatchcase(p, pat)]


def config_candidates(paths: Iterable[str], accept: Sequence[str] = ()) -> list[str]:
    """The model config an engine reads: ``config.json`` (or an accepted format's own)."""
    names = ["config.json"] + (["params.json"] if "consolidated" in accept else []) + (
        ["adapter_config.json"] if "adapter" in accept else [])
    have = set(paths)
    return [n for n in names if n in have]


def weight_source(paths: Iterable[str], accept: Sequence[str] = ()) -> tuple[str, tuple[str, ...]] | None:
    """How an engine finds the weights among ``paths``: ``("file", (name,))``, ``("index", (index,))``
    or ``("files", names)`` (an accepted format), or None.

    Only the standard names count — a stray ``*.safetensors`` shard, ``training_args.bin`` or a LoRA
    adapter never does — unless ``accept`` names a format (``ACCEPT``).
    """
    have = set(paths)
    for name in STANDARD_WEIGHTS:
        if name in have:
            return ("index", (name,)) if name.endswith(".index.json") else ("file", (name,))
    other_index = sorted(p for p in have if "/" not in p and p.endswith(".index.json")
                         and (p.endswith(".safetensors.index.json") or p.endswith(".bin.index.json")))
    if other_index:
        return "index", (other_index[0],)
    top = sorted(p for p in have if "/" not in p)
    if "consolidated" in accept:
        found = [p for p in top if fnmatch.fnmatchcase(p, "consolidated*.safetensors")
                 or fnmatch.fnmatchcase(p, "consolidated.*.pth")]
        if found:
            return "files", tuple(found)
    if "adapter" in accept:
        for name in ("adapter_model.safetensors", "adapter_model.bin"):
            if name in have:
                return "file", (name,)
    if "gguf" in accept:
        found = [p for p in top if p.endswith(".gguf")]
        if found:
            return "files", tuple(found)
    return None


def needs_config_and_tokenizer(weights: tuple[str, tuple[str, ...]] | None) -> tuple[bool, bool]:
    """(config needed, tokenizer needed): a GGUF file carries both; an adapter has no tokenizer."""
    if weights is None:
        return True, True
    kind, names = weights
    if names[0].endswith(".gguf"):
        return False, False
    if names[0].startswith("adapter_model."):
        return True, False
    return True, True
