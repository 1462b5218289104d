"""Schema validation of manifests with ``kubernetes-validate`` (bundled schemas, offline, strict).

Strict mode rejects unknown fields (a misspelt ``fsGroup`` would otherwise be dropped by the
API server in silence). An object whose kind has no schema fails: nothing passes unchecked.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import InvalidInput, ModelCacheError

__all__ = ["OLDEST_SUPPORTED", "SUPPORTED", "MissingDependency", "Problem", "load_documents", "schema_version",
           "supported_versions", "validate_objects", "validator_version"]

SUPPORTED = tuple(f"1.{minor}" for minor in range(29, 38))
"""Kubernetes versions every rendered object and every file in ``deploy/`` is valid on (tested)."""
OLDEST_SUPPORTED = SUPPORTED[0]

INSTALL_HINT = "install it: pip install 'modelcache[k8s]' (or pip install kubernetes-validate)"


class MissingDependency(ModelCacheError):
    """An optional package this command needs is not installed."""

    code = "missing-dependency"
    exit_code = 1


@dataclass(frozen=True)
class Problem:
    """One schema error: which document, which object, what is wrong."""

    source: str
    """``file`` or ``file#N`` (N: the document's position)."""
    obj: str
    """``kind/name``."""
    message: str


def _kv() -> Any:
    try:
        import kubernetes_validate.utils as kv
    except ImportError:
        raise MissingDependency("k8s validate needs the kubernetes-validate package", INSTALL_HINT) from None
    return kv


def validator_version() -> str:
    """The installed ``kubernetes-validate`` version. Raises ``MissingDependency`` when it is not installed."""
    from importlib.metadata import version

    _kv()
    return version("kubernetes-validate")


def supported_versions() -> list[str]:
    """The supported versions the installed validator has schemas for (all of them, normally)."""
    kv = _kv()
    bundled = {kv.major_minor(v) for v in kv.all_versions()}
    return [v for v in SUPPORTED if v in bundled]


def schema_version(wanted: str | None = None) -> str:
    """The Kubernetes version validated against: ``wanted`` (``1.33``) or the oldest supported."""
    kv = _kv()
    versions = kv.all_versions()
    if wanted is None:
        have = supported_versions()
        return have[0] if have else kv.major_minor(versions[-1])
    want = wanted.lstrip("v")
    minors = {kv.major_minor(v) for v in versions}
    if kv.major_minor(want) not in minors:
        newest = kv.major_minor(versions[-1])
        raise InvalidInput(f"no bundled schema for Kubernetes {wanted!r}",
                           f"give a version from {kv.major_minor(versions[0])} to {newest}, e.g. {newest}")
    return kv.major_minor(want)


def load_documents(path: Path) -> list[dict[str, Any]]:
    """Every non-empty YAML document of ``path`` (``-``: stdin)."""
    import sys

    import yaml

    try:
        text = sys.stdin.read() if str(path) == "-" else path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InvalidInput(f"cannot read {path}: {exc.strerror}", "give a rendered manifest file") from None
    try:
        docs = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as exc:
        raise InvalidInput(f"{path} is not valid YAML: {str(exc).splitlines()[0]}", "give a rendered manifest file") from None
    except RecursionError:
        raise InvalidInput(f"{path} is not valid YAML: nested too deeply", "give a rendered manifest file") from None
    for d in docs:
        if not isinstance(d, dict):
            raise InvalidInput(f"{path} holds a YAML document that is not an object", "give Kubernetes manifests")
    return docs


def _name(obj: dict[str, Any]) -> str:
    meta = obj.get("metadata") if isinstance(obj.get("metadata"), dict) else {}
    return f"{obj.get('kind', '?')}/{meta.get('name', '?')}"  # type: ignore[union-attr]


@functools.lru_cache(maxsize=16)
def _definitions(version: str, folder: str) -> Any:
    return _kv().schema_contents(f"{folder}/_definitions.json", version)


@functools.lru_cache(maxsize=256)
def _validator(version: str, api_version: str, kind: str) -> Any:
    """kubernetes-validate's own strict schema for (version, apiVersion, kind), loaded once.

    ``kubernetes_validate.validate`` re-reads the multi-megabyte ``_definitions.json`` for
    every object; this does what it does (same files, same draft, same registry) per kind.
    """
    import jsonschema
    from referencing import Registry, Resource

    kv = _kv()
    schema_version_ = [v for v in kv.all_versions() if kv.major_minor(v) == version][-1]
    group = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    folder = f"kubernetes-json-schema/v{schema_version_}-local-strict"
    try:
        schema = kv.schema_contents(f"{folder}/{kind.lower()}-{group}.json", version)
    except FileNotFoundError:
        return None
    defs = _definitions(version, folder)
    registry = Resource.from_contents(defs) @ (Resource.from_contents(schema) @ Registry())
    return jsonschema.validators.Draft202012Validator(schema, registry=registry)


def validate_objects(items: Iterable[tuple[str, dict[str, Any]]], version: str) -> list[Problem]:
    """Strict schema validation of each ``(source, object)``; the problems found (none: all valid)."""
    problems = []
    for source, obj in items:
        if not isinstance(obj.get("apiVersion"), str) or not isinstance(obj.get("kind"), str):
            problems.append(Problem(source, _name(obj), "no apiVersion or kind"))
            continue
        validator = _validator(version, obj["apiVersion"], obj["kind"])
        if validator is None:
            problems.append(Problem(source, _name(obj), f"no schema for {obj['kind']} {obj['apiVersion']} "
                                                        f"in Kubernetes {version}"))
            continue
        for err in sorted(validator.iter_errors(obj), key=lambda e: list(map(str, e.path)))[:5]:
            where = ".".join(str(p) for p in err.path) or "(top)"
            problems.append(Problem(source, _name(obj), f"{where}: {err.message}"))
    return problems
