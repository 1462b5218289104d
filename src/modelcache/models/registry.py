"""The model registry as plain data: served name + namespace → repo, commit, card checksum, engine.

Pure: parsing, serialising and the rules for adding and removing records. ``store.py`` does
the reading and writing. The file (``<cache>/.locks/modelcache/models.json``)::

    {"format_version": 1, "generation": 7, "models": [
      {"name": "llama-70b", "namespace": "default", "repo_id": "meta-llama/...", "revision": "main",
       "commit": "<40 hex>", "checksum": "<64 hex>", "kinds": ["chat"], "engine": "vllm",
       "created": 1.7e9, "updated": 1.7e9, "by": "alice@node-1",
       "history": [{"at": ..., "by": ..., "action": "add|update|replace", "note": "...",
                    "old": {repo_id, revision, commit, checksum, kinds, engine} | null, "new": {...}}]}]}

Rules: one record per (namespace, name). Registering the same name again with the same card
checksum is idempotent (kinds and engine may be updated); with a different checksum it is
refused unless ``replace`` — and a replacement is kept in the record's history (who, when, the
old commit and checksum). Other namespaces are independent (rolling updates).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from .checksum import short
from .errors import ModelConflict, UnknownModel

__all__ = ["FORMAT_VERSION", "AddOutcome", "Change", "ModelRecord", "Registration", "Registry", "plan_add",
           "plan_remove"]

FORMAT_VERSION = 1
MAX_HISTORY = 100


@dataclass(frozen=True)
class Registration:
    """What a served name points at: the part of a record a change is about."""

    repo_id: str
    revision: str
    commit: str
    checksum: str
    kinds: tuple[str, ...]
    engine: str

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict of the six fields (``kinds`` as a list)."""
        return {"repo_id": self.repo_id, "revision": self.revision, "commit": self.commit,
                "checksum": self.checksum, "kinds": list(self.kinds), "engine": self.engine}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Registration:
        """From ``to_json``'s shape (other keys ignored: a record's dict works); KeyError on a missing one."""
        return cls(str(d["repo_id"]), str(d["revision"]), str(d["commit"]), str(d["checksum"]),
                   tuple(str(k) for k in d["kinds"]), str(d["engine"]))


@dataclass(frozen=True)
class Change:
    """One entry of a record's history: when, by whom, the action, and the registration before and after.

    ``action`` is ``add`` (``old`` is None), ``update`` or ``replace``.
    """

    at: float
    by: str
    action: str  # add | update | replace
    new: Registration
    old: Registration | None = None
    note: str = ""

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict: ``at``, ``by``, ``action``, ``note``, ``old`` (or None) and ``new`` registrations."""
        return {"at": self.at, "by": self.by, "action": self.action, "note": self.note,
                "old": self.old.to_json() if self.old else None, "new": self.new.to_json()}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Change:
        """From ``to_json``'s shape (``by`` and ``note`` default to empty); a missing field raises KeyError."""
        return cls(float(d["at"]), str(d.get("by", "")), str(d["action"]), Registration.from_json(d["new"]),
                   Registration.from_json(d["old"]) if d.get("old") else None, str(d.get("note", "")))


@dataclass(frozen=True)
class ModelRecord:
    """One served name in one namespace: what it points at now, who last changed it and when, its history.

    ``repo_id``, ``revision``, ``commit``, ``checksum``, ``kinds`` and ``engine`` read the current registration.
    """

    name: str
    namespace: str
    current: Registration
    created: float
    updated: float
    by: str
    history: tuple[Change, ...] = field(default=())

    # the current registration's fields, flat
    repo_id = property(lambda self: self.current.repo_id)
    revision = property(lambda self: self.current.revision)
    commit = property(lambda self: self.current.commit)
    checksum = property(lambda self: self.current.checksum)
    kinds = property(lambda self: self.current.kinds)
    engine = property(lambda self: self.current.engine)

    @property
    def key(self) -> tuple[str, str]:
        """``(namespace, name)``: what identifies the record in a registry."""
        return (self.namespace, self.name)

    def previous_checksums(self) -> dict[str, Change]:
        """short checksum → the change that replaced it (to name what a stale replica still runs)."""
        return {short(c.old.checksum): c for c in self.history if c.old and c.old.checksum != c.new.checksum}

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict as in the registry file: name, namespace, registration fields, times, by, history."""
        return {"name": self.name, "namespace": self.namespace, **self.current.to_json(), "created": self.created,
                "updated": self.updated, "by": self.by, "history": [c.to_json() for c in self.history]}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> ModelRecord:
        """From one item of the registry file's ``models`` list; a missing field raises KeyError."""
        return cls(str(d["name"]), str(d["namespace"]), Registration.from_json(d), float(d["created"]),
                   float(d["updated"]), str(d.get("by", "")), tuple(Change.from_json(c) for c in d.get("history", [])))


@dataclass(frozen=True)
class Registry:
    """The registry file's content: the records, and the ``generation`` each write bumps (``RegistryStore``).

    Immutable: ``with_record`` and ``without`` return a new registry of the same generation.
    """

    models: tuple[ModelRecord, ...] = ()
    generation: int = 0

    def get(self, namespace: str, name: str) -> ModelRecord | None:
        """The record of ``name`` in ``namespace``, or None."""
        return next((m for m in self.models if m.key == (namespace, name)), None)

    def require(self, namespace: str, name: str) -> ModelRecord:
        """The record of ``name`` in ``namespace``; UnknownModel (naming the namespaces that have it) if none."""
        rec = self.get(namespace, name)
        if rec is None:
            elsewhere = sorted(m.namespace for m in self.models if m.name == name)
            hint = (f"it is registered in namespace(s) {', '.join(elsewhere)}: pass --namespace" if elsewhere
                    else "see `modelcache models ls`, or register it with `modelcache models add`")
            raise UnknownModel(f"no model {name!r} in namespace {namespace!r}", hint)
        return rec

    def with_record(self, record: ModelRecord) -> Registry:
        """A new registry with ``record`` added, or in place of the one with the same key."""
        others = [m for m in self.models if m.key != record.key]
        return Registry(tuple(sorted([*others, record], key=lambda m: m.key)), self.generation)

    def without(self, namespace: str, name: str) -> Registry:
        """A new registry without the record of ``name`` in ``namespace`` (the same one if there is none)."""
        return Registry(tuple(m for m in self.models if m.key != (namespace, name)), self.generation)

    def to_bytes(self) -> bytes:
        """The registry file's content: JSON with ``format_version``, ``generation`` and ``models``."""
        data = {"format_version": FORMAT_VERSION, "generation": self.generation,
                "models": [m.to_json() for m in self.models]}
        return json.dumps(data, indent=1, sort_keys=False).encode()

    @classmethod
    def from_bytes(cls, raw: bytes) -> Registry:
        """Raises ValueError on anything but a registry this version understands."""
        try:
            data = json.loads(raw)
            if not isinstance(data, dict) or data.get("format_version") != FORMAT_VERSION:
                raise ValueError(f"unknown format_version {data.get('format_version') if isinstance(data, dict) else None!r}")
            models = tuple(ModelRecord.from_json(m) for m in data.get("models", []))
            return cls(tuple(sorted(models, key=lambda m: m.key)), int(data.get("generation", 0)))
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"malformed record: {exc!r}") from None


@dataclass(frozen=True)
class AddOutcome:
    """What registering a name did: ``action``, the record now, and the registration it replaced, if any.

    ``action`` is ``created``, ``unchanged``, ``updated`` or ``replaced`` (``previous`` set for the last two).
    """

    action: str  # created | unchanged | updated | replaced
    record: ModelRecord
    previous: Registration | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict: ``action``, the record's fields (``ModelRecord.to_json``) and ``previous`` (or None)."""
        return {"action": self.action, **self.record.to_json(),
                "previous": self.previous.to_json() if self.previous else None}


def plan_add(registry: Registry, name: str, namespace: str, new: Registration, *, replace_: bool, now: float,
             by: str, note: str = "", live_replicas: int = 0) -> tuple[Registry, AddOutcome]:
    """The registry after registering ``name`` in ``namespace`` as ``new``, or ModelConflict."""
    old = registry.get(namespace, name)
    if old is None:
        rec = ModelRecord(name, namespace, new, now, now, by, (Change(now, by, "add", new, None, note),))
        return registry.with_record(rec), AddOutcome("created", rec)
    if old.current == new:
        return registry, AddOutcome("unchanged", old)
    if old.checksum != new.checksum and not replace_:
        drain = (f"{live_replicas} live replica(s) still serve it: drain them first, then " if live_replicas
                 else "")
        raise ModelConflict(
            f"{name!r} in namespace {namespace!r} is registered as {old.repo_id}@{old.commit[:12]} with card "
            f"{short(old.checksum)}; {new.repo_id}@{new.commit[:12]} has card {short(new.checksum)}",
            f"{drain}re-run with --replace (recorded in the model's history), or register it in another "
            "--namespace for a rolling update",
        )
    action = "replaced" if old.checksum != new.checksum else "updated"
    change = Change(now, by, "replace" if action == "replaced" else "update", new, old.current, note)
    history = (*old.history, change)[-MAX_HISTORY:]
    rec = replace(old, current=new, updated=now, by=by, history=history)
    return registry.with_record(rec), AddOutcome(action, rec, old.current)


def plan_remove(registry: Registry, name: str, namespace: str) -> tuple[Registry, ModelRecord]:
    """The registry without ``name`` in ``namespace``, and the record removed; UnknownModel if it is not there."""
    rec = registry.require(namespace, name)
    return registry.without(namespace, name), rec
