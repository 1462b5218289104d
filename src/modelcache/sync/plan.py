"""What ``sync`` will do, decided from the declared set and what was observed. Pure, no I/O.

A plan is a list of steps, each with the reason it is needed, printed before anything happens
(``--dry-run`` stops there). A second run over an unchanged cache plans nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from .._format import human_size
from .spec import ModelSpec, Policy, SyncSpec

__all__ = ["Observed", "Step", "SyncPlan", "SyncState", "plan_sync"]

PinKey = tuple[str, str, str]  # repo type, repo id, commit
NameKey = tuple[str, str]  # namespace, name


@dataclass(frozen=True)
class Observed:
    """One declared model as found: its commit (resolved upstream, or the declared one), and
    whether the cache already has it ready, pinned and registered."""

    model: ModelSpec
    commit: str | None
    ready: bool = False
    pinned: bool = False
    registered_commit: str | None = None
    size: int | None = None
    """Bytes of the files the model needs (when the commit's file list is known)."""
    error: str | None = None
    exit_code: int = 1


@dataclass(frozen=True)
class SyncState:
    """What earlier syncs of this cache root put in place (so only that is ever undone)."""

    pins: frozenset[PinKey] = frozenset()
    names: frozenset[NameKey] = frozenset()


@dataclass(frozen=True)
class Step:
    """One thing ``sync`` will do, with its target and reason; ``ok``: already in place, ``error``: cannot be done."""

    action: str
    """``download``, ``pin``, ``register``, ``unpin``, ``unregister``, ``gc``, ``error`` or ``ok``."""
    target: str
    reason: str
    model: ModelSpec | None = None
    commit: str | None = None
    pin: PinKey | None = None
    name: NameKey | None = None

    def to_dict(self) -> dict[str, object]:
        """JSON-ready dict: ``action``, ``target``, ``reason``, and ``commit`` when there is one."""
        return {"action": self.action, "target": self.target, "reason": self.reason,
                **({"commit": self.commit} if self.commit else {})}


@dataclass(frozen=True)
class SyncPlan:
    """The steps of a sync in order, the GC policy, the sync state if every step succeeds, and notes."""

    steps: tuple[Step, ...]
    policy: Policy
    state_after: SyncState
    notes: tuple[str, ...] = field(default=())

    @property
    def changes(self) -> tuple[Step, ...]:
        """The steps that change something (all but ``ok`` and ``error``)."""
        return tuple(s for s in self.steps if s.action not in ("ok", "error"))

    @property
    def errors(self) -> tuple[Step, ...]:
        """The ``error`` steps: declared models that could not be observed (the reason says why)."""
        return tuple(s for s in self.steps if s.action == "error")

    def to_dict(self) -> dict[str, object]:
        """JSON-ready dict: ``steps``, the number of ``changes`` and ``errors``, and ``notes``."""
        return {"steps": [s.to_dict() for s in self.steps], "changes": len(self.changes),
                "errors": len(self.errors), "notes": list(self.notes)}

    def render(self) -> list[str]:
        """The plan as lines for people, one per step (``+`` add, ``-`` undo, ``~`` gc, ``=`` ok, ``!`` error)."""
        marks = {"download": "+", "pin": "+", "register": "+", "unpin": "-", "unregister": "-", "gc": "~",
                 "ok": "=", "error": "!"}
        lines = [f"  {marks[s.action]} {s.action:<10} {s.target}   ({s.reason})" for s in self.steps]
        if not self.changes and not self.errors:
            lines.append("  nothing to do: the cache matches the declared set")
        return lines + [f"  note: {n}" for n in self.notes]


def _short(commit: str | None) -> str:
    return commit[:12] if commit else "?"


def plan_sync(spec: SyncSpec, observed: Iterable[Observed], state: SyncState, gc_preview: str | None = None) -> SyncPlan:
    """Steps per model (download → pin → register), then undo what earlier syncs declared and
    this one does not (unpin, unregister), then the GC policy. A model whose commit could not
    be found keeps whatever an earlier sync pinned for it."""
    steps: list[Step] = []
    declared_pins: set[PinKey] = set()
    declared_names: set[NameKey] = set()
    kept_repos: set[tuple[str, str]] = set()
    for ob in observed:
        m = ob.model
        if ob.error is not None or ob.commit is None:
            steps.append(Step("error", m.label(), ob.error or "no commit", model=m))
            kept_repos.add((m.repo_type, m.repo))
            if m.name:
                declared_names.add((m.namespace, m.name))
            continue
        commit = ob.commit
        pin_key = (m.repo_type, m.repo, commit)
        declared_pins.add(pin_key)
        target = f"{m.repo}@{m.revision} → {_short(commit)}"
        size = f", {human_size(ob.size)}" if ob.size is not None else ""
        if not ob.ready:
            steps.append(Step("download", target, f"{m.profile}{size}: not ready in the cache", model=m, commit=commit))
        if not ob.pinned:
            steps.append(Step("pin", f"{m.repo}@{_short(commit)}", "declared", model=m, commit=commit, pin=pin_key))
        if m.name:
            declared_names.add((m.namespace, m.name))
            if ob.registered_commit != commit:
                why = "not registered" if ob.registered_commit is None else f"was {_short(ob.registered_commit)}"
                steps.append(Step("register", f"{m.name} → {m.repo}@{_short(commit)}", why, model=m, commit=commit,
                                  name=(m.namespace, m.name)))
        if ob.ready and ob.pinned and (not m.name or ob.registered_commit == commit):
            steps.append(Step("ok", target, "ready, pinned" + (", registered" if m.name else ""), model=m, commit=commit))
    for pin in sorted(state.pins - declared_pins):
        if (pin[0], pin[1]) in kept_repos:
            continue
        steps.append(Step("unpin", f"{pin[1]}@{_short(pin[2])}", "no longer declared", pin=pin))
    for name in sorted(state.names - declared_names):
        steps.append(Step("unregister", f"{name[1]} ({name[0]})", "no longer declared", name=name))
    if not spec.policy.empty:
        steps.append(Step("gc", _policy_text(spec.policy), gc_preview or "apply the policy"))
    kept_pins = {p for p in state.pins if (p[0], p[1]) in kept_repos}
    after = SyncState(frozenset(declared_pins | kept_pins), frozenset(declared_names))
    return SyncPlan(tuple(steps), spec.policy, after)


def _policy_text(policy: Policy) -> str:
    parts = []
    if policy.max_size is not None:
        parts.append(f"max_size={human_size(policy.max_size)}")
    if policy.max_age is not None:
        parts.append(f"max_age={policy.max_age / 86400:g}d")
    if policy.keep_last is not None:
        parts.append(f"keep_last={policy.keep_last}")
    return " ".join(parts)


def state_from_json(data: Mapping[str, object]) -> SyncState:
    """The state file's content; anything malformed counts as "nothing was synced before"."""
    pins: set[PinKey] = set()
    names: set[NameKey] = set()
    for p in data.get("pins", []) if isinstance(data.get("pins"), list) else []:  # type: ignore[union-attr]
        if isinstance(p, list) and len(p) == 3 and all(isinstance(x, str) for x in p):
            pins.add((p[0], p[1], p[2]))
    for n in data.get("names", []) if isinstance(data.get("names"), list) else []:  # type: ignore[union-attr]
        if isinstance(n, list) and len(n) == 2 and all(isinstance(x, str) for x in n):
            names.add((n[0], n[1]))
    return SyncState(frozenset(pins), frozenset(names))


def state_to_json(state: SyncState) -> dict[str, object]:
    return {"pins": sorted(list(p) for p in state.pins), "names": sorted(list(n) for n in state.names)}
