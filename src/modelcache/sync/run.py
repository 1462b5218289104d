"""``sync``: look at the cache (and the upstream, for branch revisions), plan, then carry it out.

I/O lives here; deciding lives in ``plan.py``. Models are downloaded one after another, each
with the whole connection budget (so the set shares one budget, and one model's failure does
not stop the others). What a sync pinned and registered is remembered in
``<cache>/.locks/modelcache/sync.json``, so a later sync undoes only its own work, never a pin
or a name someone added by hand.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from ..cache.gc import plan_gc, scan_revisions
from ..cache.layout import root_state
from ..cache.leases import is_pinned
from ..cache.readiness import resolve_commit
from ..errors import ModelCacheError, NotCached
from ..files import atomic_write_bytes
from ..models import ModelManager
from ..profiles import select
from ..progress import NullProgress, Progress
from ..service.model_cache import ModelCache
from ..service.remote import fetch_revision
from ..validation import is_commit
from .nodes import NodeLabeller, check_unique_keys, label_changes, label_key, label_value
from .plan import Observed, Step, SyncPlan, SyncState, plan_sync, state_from_json, state_to_json
from .spec import ModelSpec, Policy, SyncSpec

__all__ = ["StepOutcome", "SyncResult", "observe", "read_state", "sync"]

STATE_MAX_BYTES = 4 << 20


@dataclass(frozen=True)
class StepOutcome:
    """How one step went: ``ok``, a message, and the exit code of its error."""

    step: Step
    ok: bool
    message: str = ""
    exit_code: int = 0

    def to_dict(self) -> dict[str, object]:
        """JSON-ready dict: the step's fields plus ``ok``, and ``message`` when there is one."""
        return {**self.step.to_dict(), "ok": self.ok, **({"message": self.message} if self.message else {})}


@dataclass(frozen=True)
class SyncResult:
    """A sync's plan and how its steps went (``ok`` steps have no outcome; a dry run records only the errors)."""

    plan: SyncPlan
    outcomes: tuple[StepOutcome, ...]
    dry_run: bool

    @property
    def failed(self) -> tuple[StepOutcome, ...]:
        """The outcomes that did not succeed (skipped steps included)."""
        return tuple(o for o in self.outcomes if not o.ok)

    @property
    def exit_code(self) -> int:
        """0 when nothing failed, else the exit code of the first failure (1 if it has none)."""
        codes = [o.exit_code or 1 for o in self.failed]
        return codes[0] if codes else 0

    def to_dict(self) -> dict[str, object]:
        """JSON-ready dict: ``SyncPlan.to_dict`` plus ``dry_run``, ``outcomes`` and ``ok``."""
        return {**self.plan.to_dict(), "dry_run": self.dry_run, "outcomes": [o.to_dict() for o in self.outcomes],
                "ok": not self.failed}


def _state_path(cache_dir: Path) -> Path:
    return root_state(cache_dir) / "sync.json"


def read_state(cache_dir: Path) -> SyncState:
    """What earlier syncs did; a missing or unreadable state file means nothing (and says so by
    being empty: a sync then unpins nothing it cannot prove it pinned)."""
    import os
    import stat

    path = _state_path(cache_dir)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return SyncState()
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return SyncState()
        raw = os.read(fd, STATE_MAX_BYTES + 1)
    finally:
        os.close(fd)
    try:
        data = json.loads(raw) if len(raw) <= STATE_MAX_BYTES else {}
    except (ValueError, RecursionError):
        return SyncState()
    return state_from_json(data) if isinstance(data, dict) else SyncState()


def _write_state(cache_dir: Path, state: SyncState) -> None:
    atomic_write_bytes(_state_path(cache_dir), json.dumps(state_to_json(state)).encode(), root=cache_dir)


def observe(mc: ModelCache, mm: ModelManager, spec: SyncSpec) -> list[Observed]:
    """Each declared model's commit (the declared one; else upstream's answer for its revision;
    offline: the cache's), and whether it is ready, pinned and registered."""
    out = []
    for m in spec.models:
        try:
            out.append(_observe_one(mc, mm, m))
        except ModelCacheError as exc:
            out.append(Observed(m, None, error=exc.message, exit_code=exc.exit_code))
    return out


def _observe_one(mc: ModelCache, mm: ModelManager, m: ModelSpec) -> Observed:
    layout = mc.layout(m.repo, m.repo_type)
    size = None
    if m.commit:
        commit: str | None = m.commit
    elif mc.settings.offline:
        commit = resolve_commit(layout, m.revision)
        if commit is None:
            raise NotCached(f"{m.repo}@{m.revision} is not in the cache and sync is offline",
                            "run sync where the endpoint is reachable, or declare `commit:`")
    else:
        _info, record = fetch_revision(mc.client, layout, m.revision)
        commit = record.commit
        wanted = select(record.files, m.profile, m.include, m.exclude)
        size = sum(record.files[p].size for p in wanted)
    assert commit is not None
    ready = mc.check(m.repo, commit, m.profile, m.repo_type, record=False, include=m.include,
                     exclude=m.exclude).ready
    registered = None
    if m.name:
        found = [r for r in mm.list(m.namespace) if r.name == m.name]
        registered = found[0].commit if found else None
    return Observed(m, commit, ready=ready, pinned=is_pinned(layout, commit), registered_commit=registered, size=size)


def _gc_preview(mc: ModelCache, spec: SyncSpec, protected: set[tuple[str, str, str]]) -> str:
    """What the policy would free once the declared revisions are pinned."""
    revisions = [dataclasses.replace(r, pinned=r.pinned or (r.repo_type, r.repo_id, r.commit) in protected)
                 for r in scan_revisions([mc.cache_dir], mc.settings.lock_stale_after)]
    p = spec.policy
    plan = plan_gc(revisions, max_size=p.max_size, max_age=p.max_age, keep_last=p.keep_last, now=time.time())
    from .._format import human_size

    return f"would free {human_size(plan.freed)} ({len(plan.remove)} revision(s)) as the cache is now"


def sync(mc: ModelCache, spec: SyncSpec, *, dry_run: bool = False, progress: Callable[[ModelSpec], Progress] | None = None,
         on_plan: Callable[[SyncPlan], None] | None = None, labeller: NodeLabeller | None = None,
         in_use: Callable[[], Mapping[tuple[str, str], str]] | None = None) -> SyncResult:
    """Reconcile ``mc``'s cache root with ``spec``: plan (``on_plan`` sees it first), then do it.

    ``labeller`` (``--label-node``): before any step, the node loses every model label not
    backed by a declared, ready model (so no unpin or GC can remove files a label promises);
    each model is labelled once its last step succeeded. If the labels cannot be updated,
    nothing is unpinned or collected. ``in_use``: revisions held from outside the cache (live
    pods, ``k8s.pods``), kept by the GC step (which removes nothing if it raises)."""
    if labeller is not None:
        check_unique_keys(spec.models)
    mm = ModelManager(mc)
    state = read_state(mc.cache_dir)
    observed = observe(mc, mm, spec)
    protected = {(o.model.repo_type, o.model.repo, o.commit) for o in observed if o.commit}
    preview = None
    if not spec.policy.empty:
        try:
            preview = _gc_preview(mc, spec, protected)  # type: ignore[arg-type]
        except ModelCacheError as exc:
            preview = f"cannot preview: {exc.message}"
    plan = plan_sync(spec, observed, state, preview)
    current: dict[str, str] = {}
    wanted: dict[str, str] = {}
    label_error: ModelCacheError | None = None
    if labeller is not None:
        wanted = _wanted_labels(mc, observed)
        try:
            current = labeller.labels()
        except ModelCacheError as exc:
            label_error = exc
        plan = dataclasses.replace(plan, notes=plan.notes + _label_notes(labeller.node, current, wanted, plan, label_error))
    if on_plan is not None:
        on_plan(plan)
    outcomes = [StepOutcome(s, False, s.reason, next((o.exit_code for o in observed if o.model is s.model), 1))
                for s in plan.errors]
    if dry_run:
        return SyncResult(plan, tuple(outcomes), True)
    failed_models: set[int] = {id(s.model) for s in plan.errors}
    pins, names = set(state.pins), set(state.names)
    labels_ok = _label_before(labeller, current, wanted, label_error, outcomes) if labeller is not None else True
    last_step = {id(s.model): s for s in plan.changes if s.model is not None}
    for step in plan.changes:
        if step.model is not None and id(step.model) in failed_models:
            outcomes.append(StepOutcome(step, False, "skipped: an earlier step of this model failed", 1))
            continue
        if step.action in ("unpin", "gc") and not labels_ok:
            outcomes.append(StepOutcome(step, False, "skipped: the node's labels could not be updated first", 1))
            continue
        if step.action == "gc" and any(not o.ok for o in outcomes):
            outcomes.append(StepOutcome(step, False, "skipped: not every model is in place", 1))
            continue
        try:
            _do(mc, mm, step, progress, plan.policy, in_use)
        except ModelCacheError as exc:
            outcomes.append(StepOutcome(step, False, f"{exc.message} (hint: {exc.hint})" if exc.hint else exc.message,
                                        exc.exit_code))
            if step.model is not None:
                failed_models.add(id(step.model))
            continue
        outcomes.append(StepOutcome(step, True))
        if labeller is not None and step.model is not None and last_step.get(id(step.model)) is step:
            _label_ready(labeller, step, outcomes)
        if step.action == "pin" and step.pin:
            pins.add(step.pin)
        elif step.action == "unpin" and step.pin:
            pins.discard(step.pin)
        elif step.action == "register" and step.name:
            names.add(step.name)
        elif step.action == "unregister" and step.name:
            names.discard(step.name)
    # (a pin or name that was there before any sync made it is not adopted: sync never undoes it)
    _write_state(mc.cache_dir, SyncState(frozenset(pins), frozenset(names)))
    return SyncResult(plan, tuple(outcomes), False)


def _wanted_labels(mc: ModelCache, observed: list[Observed]) -> dict[str, str]:
    """Our labels as they must be before any step: the declared models that are ready now.

    A model whose commit could not be looked up (the mirror is down) keeps its label when the
    commit its revision points to here is ready and pinned: this sync keeps that pin, so no GC
    can take it, and a flapping mirror does not unlabel a whole fleet."""
    wanted = {label_key(o.model.repo, o.model.repo_type): label_value(o.commit)
              for o in observed if o.commit and o.ready and o.error is None}
    for o in observed:
        if o.error is None and o.commit is not None:
            continue
        m = o.model
        try:
            layout = mc.layout(m.repo, m.repo_type)
            local = m.commit or resolve_commit(layout, m.revision)
            ready = bool(local) and is_pinned(layout, local) and mc.check(  # type: ignore[arg-type]
                m.repo, local, m.profile, m.repo_type, record=False, include=m.include, exclude=m.exclude).ready
        except ModelCacheError:
            ready = False  # cannot tell: no label (the safe side)
        if ready and local:
            wanted[label_key(m.repo, m.repo_type)] = label_value(local)
    return wanted


def _label_notes(node: str, current: dict[str, str], wanted: dict[str, str], plan: SyncPlan,
                 error: ModelCacheError | None) -> tuple[str, ...]:
    """What will happen to the node's labels, for the printed plan."""
    if error is not None:
        return (f"node {node}: cannot read its labels ({error.message}): nothing will be unpinned or collected",)
    changes = label_changes(current, wanted)
    notes = [f"node {node}: remove label {k} before any step (no declared model ready here)"
             for k, v in changes.items() if v is None]
    notes += [f"node {node}: label {k}={v} (ready)" for k, v in changes.items() if v is not None]
    notes += [f"node {node}: label {label_key(s.model.repo, s.model.repo_type)}={label_value(s.commit)} once ready"
              for s in plan.steps if s.action == "download" and s.model is not None and s.commit]
    return tuple(notes)


def _label_before(labeller: NodeLabeller, current: dict[str, str], wanted: dict[str, str],
                  error: ModelCacheError | None, outcomes: list[StepOutcome]) -> bool:
    """One PATCH before any step: our labels become ``wanted``; False (and a failed outcome) if not."""
    step = Step("label", labeller.node, "before any step: only declared, ready models")
    try:
        if error is not None:
            raise error
        labeller.patch(label_changes(current, wanted))
    except ModelCacheError as exc:
        outcomes.append(StepOutcome(step, False, exc.message, exc.exit_code))
        return False
    return True


def _label_ready(labeller: NodeLabeller, step: Step, outcomes: list[StepOutcome]) -> None:
    """After a model's last step succeeded (a failed download skips the rest): label the node with it."""
    m = step.model
    assert m is not None and step.commit is not None
    key, value = label_key(m.repo, m.repo_type), label_value(step.commit)
    label = Step("label", f"{labeller.node} {key}={value}", "ready", model=m, commit=step.commit)
    try:
        labeller.patch({key: value})
    except ModelCacheError as exc:
        outcomes.append(StepOutcome(label, False, exc.message, exc.exit_code))
        return
    outcomes.append(StepOutcome(label, True))


def _do(mc: ModelCache, mm: ModelManager, step: Step, progress: Callable[[ModelSpec], Progress] | None,
        policy: Policy, in_use: Callable[[], Mapping[tuple[str, str], str]] | None = None) -> None:
    m = step.model
    if step.action == "download" and m is not None and step.commit:
        refs = [m.revision] if not m.commit and not is_commit(m.revision) else []
        mc.download(m.repo, step.commit, profile=m.profile, include=m.include, exclude=m.exclude,
                    repo_type=m.repo_type, refs=refs, progress=progress(m) if progress else NullProgress())
    elif step.action == "pin" and m is not None and step.commit:
        mc.pin(m.repo, step.commit, m.repo_type)
    elif step.action == "register" and m is not None and step.commit:
        kinds = m.kinds or ("chat",)
        mm.add(m.name or "", m.repo, step.commit, kinds=kinds, namespace=m.namespace, engine=m.engine, replace=True,
               note="modelcache sync")
    elif step.action == "unpin" and step.pin:
        mc.unpin(step.pin[1], step.pin[2], step.pin[0])
    elif step.action == "unregister" and step.name:
        mm.remove(step.name[1], step.name[0])
    elif step.action == "gc":
        mc.gc(max_size=policy.max_size, max_age=policy.max_age, keep_last=policy.keep_last, in_use=in_use)
