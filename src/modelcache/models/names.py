"""Validation of what the model manager is given: served names, namespaces, replica ids, engines,
kinds. Pure functions, no I/O; every value is checked here before it reaches a file or a lease."""

from __future__ import annotations

import re
from collections.abc import Iterable

from ..errors import InvalidInput

__all__ = ["DEFAULT_KINDS", "DEFAULT_NAMESPACE", "ENGINES", "KINDS", "validate_engine", "validate_kinds",
           "validate_name", "validate_namespace", "validate_replica"]

ENGINES = ("vllm", "sglang", "trtllm", "other")
KINDS = ("chat", "completions", "embeddings")
DEFAULT_KINDS = ("chat", "completions")
DEFAULT_NAMESPACE = "default"

# Served names may look like repo ids ("meta-llama/Llama-3.3-70B-Instruct"); never ':' (the
# separator of replica lease holders), whitespace or control characters.
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/\-]{0,95}$")
_NAMESPACE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\-]{0,62}$")
_REPLICA = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\-]{0,127}$")


def validate_name(name: str) -> str:
    """``name`` if it is a valid served model name, else InvalidInput.

    Up to 96 letters, digits, ``.``, ``_``, ``-`` and ``/``, starting with a letter or digit; no ``//``,
    ``..`` or trailing ``/``.
    """
    if not isinstance(name, str) or not _NAME.match(name) or "//" in name or name.endswith("/") or ".." in name:
        raise InvalidInput(f"invalid served model name {name!r}",
                           "use letters, digits, '.', '_', '-' and '/' (up to 96), e.g. llama-70b")
    return name


def validate_namespace(namespace: str) -> str:
    """``namespace`` if it is a valid namespace, else InvalidInput.

    Up to 63 letters, digits, ``.``, ``_`` and ``-``, starting with a letter or digit.
    """
    if not isinstance(namespace, str) or not _NAMESPACE.match(namespace):
        raise InvalidInput(f"invalid namespace {namespace!r}",
                           "use letters, digits, '.', '_' and '-' (up to 63), e.g. default or team-a")
    return namespace


def validate_replica(replica: str) -> str:
    """``replica`` if it is a valid replica id, else InvalidInput.

    Up to 128 letters, digits, ``.``, ``_`` and ``-``, starting with a letter or digit.
    """
    if not isinstance(replica, str) or not _REPLICA.match(replica):
        raise InvalidInput(f"invalid replica id {replica!r}",
                           "use letters, digits, '.', '_' and '-' (up to 128), e.g. the pod name")
    return replica


def validate_engine(engine: str) -> str:
    """``engine`` if it is one of ``ENGINES``, else InvalidInput."""
    if engine not in ENGINES:
        raise InvalidInput(f"invalid engine {engine!r}", f"use one of: {', '.join(ENGINES)}")
    return engine


def validate_kinds(kinds: Iterable[str]) -> tuple[str, ...]:
    """The kinds without duplicates, in the order given (``DEFAULT_KINDS`` when there are none).

    InvalidInput for a kind that is not in ``KINDS``.
    """
    out = tuple(dict.fromkeys(kinds))
    for k in out:
        if k not in KINDS:
            raise InvalidInput(f"invalid engine kind {k!r}", f"use one or more of: {', '.join(KINDS)}")
    return out or DEFAULT_KINDS
