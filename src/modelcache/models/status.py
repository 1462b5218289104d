"""Status of every registered model: cache readiness, card checksum, replicas and their skew.

``models_status(cache_dir)`` is what ``models ls``/``models verify`` print and what a server
endpoint returns: plain JSON-able data, read from the local disk only. ``disk=True`` also
re-hashes the card files of each model (``verify``); without it nothing but small JSON files
is read and files are only ``stat``-ed, so it is cheap enough to poll.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..cache.readiness import check_revision
from ..cache.layout import RepoLayout
from ..errors import ModelCacheError
from ..validation import is_commit
from .card import disk_card, recorded_card
from .checksum import short
from .registry import ModelRecord
from .replicas import Replica, live_replicas
from .store import RegistryStore

__all__ = ["assess_replicas", "model_status", "models_status"]


def assess_replicas(record: ModelRecord, replicas: Sequence[Replica], now: float | None = None) -> dict[str, Any]:
    """Pure: do the replicas of ``record`` agree with each other and with the registered card?"""
    registered = short(record.checksum)
    groups: dict[str, list[Replica]] = {}
    for r in replicas:
        groups.setdefault(r.card, []).append(r)
    agree = len(groups) <= 1
    current = all(card == registered for card in groups)
    previous = record.previous_checksums()
    skew = []
    if not (agree and current):
        for card, members in sorted(groups.items(), key=lambda kv: (kv[0] != registered, kv[0])):
            change = previous.get(card)
            known = (f"registered before {time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(change.at))} UTC "
                     f"({change.old.repo_id}@{change.old.commit[:12]}; replaced by {change.by or 'someone'})"
                     if change and change.old else None)
            skew.append({"card": card, "registered": card == registered, "known_as": known,
                         "commits": sorted({m.lease.commit for m in members}),
                         "replicas": [m.replica for m in members]})
    return {"replicas": [r.to_dict(now) for r in replicas], "agree": agree, "current": current, "skew": skew}


def _problems(record: ModelRecord, cache: dict[str, Any], card: dict[str, Any], reps: dict[str, Any]) -> list[str]:
    out = []
    if not cache["tokenizer"]:
        out.append(f"cache: {cache['reason']}")
    if card["recorded"] is not None and card["recorded"] != record.checksum:
        out.append(f"the completeness record of {record.commit[:12]} gives card {short(card['recorded'])}, "
                   f"registered {short(record.checksum)}")
    if card["disk"] is not None and card["disk"] != record.checksum:
        what = "; ".join(d["describe"] for d in card["drift"]) or f"the files give card {short(card['disk'])}"
        out.append(f"card drift on disk: {what}")
    for group in reps["skew"]:
        if not group["registered"]:
            out.append(f"{len(group['replicas'])} replica(s) run card {group['card']}, registered "
                       f"{short(record.checksum)}: {', '.join(group['replicas'])}"
                       + (f" ({group['known_as']})" if group["known_as"] else ""))
    return out


def model_status(cache_dir: Path, record: ModelRecord, replicas: Sequence[Replica], *, disk: bool = False,
                 now: float | None = None) -> dict[str, Any]:
    """One record's entry of ``models_status``: cache readiness, card, replicas, problems, notes, ``ok``.

    Local disk only; ``disk=True`` also re-hashes the card files.
    """
    layout = RepoLayout(Path(cache_dir), "model", record.repo_id)
    tok = check_revision(layout, record.commit, "tokenizer")
    full = check_revision(layout, record.commit, "full")
    cache = {"tokenizer": tok.ready, "full": full.ready, "snapshot": str(tok.snapshot) if tok.snapshot else None,
             "reason": (full if tok.ready else tok).reason}
    rec = recorded_card(layout, record.commit)
    card: dict[str, Any] = {"registered": record.checksum, "recorded": rec.checksum if rec else None,
                            "disk": None, "disk_checked": disk, "matches": None, "drift": []}
    if disk:
        dc = disk_card(layout, record.commit)
        card.update(disk=dc.card.checksum, matches=dc.card.checksum == record.checksum,
                    drift=[{**d.to_dict(), "describe": d.describe()} for d in dc.drift])
    reps = assess_replicas(record, replicas, now)
    problems = _problems(record, cache, card, reps)
    notes = []
    moved = None if is_commit(record.revision) else layout.read_ref(record.revision)
    if moved and moved != record.commit:
        notes.append(f"{record.revision} now points at {moved[:12]}; {record.name} stays on {record.commit[:12]} "
                     f"until re-registered (models add … --replace)")
    return {"name": record.name, "namespace": record.namespace, "repo_id": record.repo_id,
            "revision": record.revision, "commit": record.commit, "checksum": record.checksum,
            "kinds": list(record.kinds), "engine": record.engine, "created": record.created,
            "updated": record.updated, "by": record.by, "changes": len(record.history),
            "cache": cache, "card": card, **reps, "problems": problems, "notes": notes, "ok": not problems}


def models_status(cache_dir: Path, *, disk: bool = False, namespace: str | None = None,
                  name: str | None = None) -> dict[str, Any]:
    """Every registered model (optionally of one namespace / name), its replicas and their skew.

    ``{"cache_dir", "checked_at", "disk_checked", "ok", "models": [...], "unregistered_replicas": [...]}``;
    each model has ``cache`` (tokenizer/full ready), ``card`` (registered / recorded / on-disk
    checksum, drift), ``replicas``, ``agree`` (replicas load one card), ``current`` (it is the
    registered one), ``skew`` (the groups when not), ``problems``, ``notes`` and ``ok``. An
    unreadable registry gives ``ok: false`` and ``error`` (``{"error", "message", "hint"}``).
    """
    cache_dir = Path(cache_dir)
    now = time.time()
    try:
        registry = RegistryStore(cache_dir).read()
    except ModelCacheError as exc:  # an unreadable registry: say so, as data
        return {"cache_dir": str(cache_dir), "checked_at": now, "disk_checked": disk, "ok": False,
                "error": exc.to_dict(), "models": [], "unregistered_replicas": []}
    replicas = live_replicas(cache_dir, now)
    known = {m.key for m in registry.models}
    models = [
        model_status(cache_dir, m, [r for r in replicas if (r.namespace, r.name) == m.key], disk=disk, now=now)
        for m in registry.models
        if (namespace is None or m.namespace == namespace) and (name is None or m.name == name)
    ]
    orphans = [r.to_dict(now) for r in replicas if (r.namespace, r.name) not in known
               and (namespace is None or r.namespace == namespace) and (name is None or r.name == name)]
    return {"cache_dir": str(cache_dir), "checked_at": now, "disk_checked": disk,
            "ok": all(m["ok"] for m in models), "models": models, "unregistered_replicas": orphans}
