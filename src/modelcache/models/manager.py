"""``ModelManager``: served model names → cached revisions, one card checksum per name, replicas.

>>> from modelcache import ModelCache, ModelManager
>>> mc = ModelCache()                                                     # doctest: +SKIP
>>> mc.download("Qwen/Qwen3-0.6B", profile="tokenizer")                   # doctest: +SKIP
>>> mm = ModelManager(mc)                                                 # doctest: +SKIP
>>> mm.add("qwen3", "Qwen/Qwen3-0.6B", kinds=["chat"], engine="vllm")     # doctest: +SKIP
>>> with mm.use("qwen3", replica="vllm-0") as ready:                      # doctest: +SKIP
...     subprocess.run(["vllm", "serve", str(ready.snapshot)], env=child_env(parent_env, ready.env))
"""

from __future__ import annotations

import getpass
import os
import re
import socket
import time
from collections.abc import Iterable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..cache.readiness import check_revision, resolve_commit
from ..cache.layout import RepoLayout
from ..cache.leases import Lease, LeaseInfo, acquire_lease, release_lease
from ..errors import NotCached
from ..profiles import validate_profile
from ..progress import Progress
from ..validation import is_commit, parse_repo_ref, validate_repo_id, validate_revision
from ..service.model_cache import ModelCache
from ..settings import Settings
from .card import DiskCard, disk_card
from .checksum import short
from .errors import CardMismatch, ModelConflict
from .names import (
    DEFAULT_KINDS,
    DEFAULT_NAMESPACE,
    validate_engine,
    validate_kinds,
    validate_name,
    validate_namespace,
    validate_replica,
)
from .registry import AddOutcome, ModelRecord, Registration, plan_add, plan_remove
from .replicas import Replica, live_replicas, replica_holder
from .status import models_status
from .store import RegistryStore

__all__ = ["ModelManager", "Ready", "Target", "default_replica_id"]


@dataclass(frozen=True)
class Target:
    """What ``run``/``resolve`` were asked for: a registered name, or a repo at a revision."""

    repo_id: str
    revision: str
    record: ModelRecord | None = None


@dataclass(frozen=True)
class Ready:
    """A model ready on local disk and leased for as long as the ``use`` block runs."""

    repo_id: str
    revision: str
    commit: str
    snapshot: Path
    env: dict[str, str]
    """What an engine process needs: ``HF_HUB_CACHE``, ``HF_HUB_OFFLINE=1``, ``MODELCACHE_SNAPSHOT``…"""
    lease_id: str | None = None
    record: ModelRecord | None = None
    card: str | None = None
    """The card checksum of the files on disk (for a registered name)."""
    replica_lease_id: str | None = None
    download: dict[str, Any] = field(default_factory=dict)


def default_replica_id() -> str:
    """The host name (a pod's name in Kubernetes), made a valid replica id."""
    host = re.sub(r"[^A-Za-z0-9._-]", "-", socket.gethostname()).lstrip("._-")[:128]
    return host or f"pid-{os.getpid()}"


def _who() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = f"uid-{os.getuid()}"
    return f"{user}@{socket.gethostname()}"


class ModelManager:
    """The registry of served models kept with a cache, and the engines that serve them."""

    def __init__(self, cache: ModelCache | Settings | None = None, *, who: str | None = None) -> None:
        self.cache = cache if isinstance(cache, ModelCache) else ModelCache(cache)
        self.store = RegistryStore(self.cache.cache_dir, stale_after=self.cache.settings.lock_stale_after)
        self.who = who or _who()

    @property
    def cache_dir(self) -> Path:
        """The cache root, where the registry is kept."""
        return self.cache.cache_dir

    def _layout(self, repo_id: str) -> RepoLayout:
        return self.cache.layout(repo_id)

    # -- cards ------------------------------------------------------------------------------------
    def card(self, repo_id: str, revision: str = "main") -> DiskCard:
        """The card of a cached revision: recorded checksum, on-disk checksum and any drift."""
        layout = self._layout(repo_id)
        commit = resolve_commit(layout, validate_revision(revision))
        if commit is None:
            raise NotCached(f"{repo_id}@{revision} is not in the cache at {self.cache_dir}",
                            f"modelcache download {repo_id} --revision {revision} --profile tokenizer")
        return disk_card(layout, commit)

    def _checked_card(self, record: ModelRecord, layout: RepoLayout, commit: str, force: bool) -> str:
        dc = disk_card(layout, commit)
        if dc.card.checksum != record.checksum and not force:
            what = "; ".join(d.describe() for d in dc.drift) or f"{record.repo_id}@{commit[:12]} is another card"
            raise CardMismatch(
                f"{record.name!r} ({record.namespace}) is registered with card {short(record.checksum)}, the files "
                f"on disk give {short(dc.card.checksum)}: {what}",
                f"re-fetch the changed files with `modelcache verify --repair {record.repo_id}@{record.commit}`; "
                "--force starts anyway (the replica then shows as skew in `modelcache models verify`)",
            )
        return dc.card.checksum

    # -- registry ---------------------------------------------------------------------------------
    def add(self, name: str, repo_id: str, revision: str = "main", *, kinds: Iterable[str] = DEFAULT_KINDS,
            namespace: str = DEFAULT_NAMESPACE, engine: str = "other", replace: bool = False,
            note: str = "") -> AddOutcome:
        """Register ``name`` as ``repo_id@revision`` (its tokenizer profile must be in the cache)."""
        validate_name(name)
        validate_namespace(namespace)
        validate_repo_id(repo_id)
        validate_revision(revision)
        kinds_t, engine = validate_kinds(kinds), validate_engine(engine)
        layout = self._layout(repo_id)
        ready = check_revision(layout, revision, "tokenizer")
        if not ready.ready or ready.commit is None:
            raise NotCached(f"cannot register {name!r}: {ready.reason}",
                            f"modelcache download {repo_id} --revision {revision} --profile tokenizer")
        dc = disk_card(layout, ready.commit)
        if dc.recorded is not None and not dc.matches:
            raise CardMismatch(f"the card files of {repo_id}@{ready.commit[:12]} differ from the commit's record: "
                               + "; ".join(d.describe() for d in dc.drift),
                               f"modelcache verify --repair {repo_id}@{ready.commit}")
        checksum = (dc.recorded or dc.card).checksum
        new = Registration(repo_id, revision, ready.commit, checksum, kinds_t, engine)
        others = [r for r in self.replicas(name, namespace) if r.card != short(checksum)]
        return self.store.update(lambda reg: plan_add(reg, name, namespace, new, replace_=replace, now=time.time(),
                                                      by=self.who, note=note, live_replicas=len(others)))

    def get(self, name: str, namespace: str = DEFAULT_NAMESPACE) -> ModelRecord:
        """The record of ``name`` in ``namespace``; InvalidInput for an invalid name, UnknownModel if none."""
        return self.store.read().require(validate_namespace(namespace), validate_name(name))

    def list(self, namespace: str | None = None) -> list[ModelRecord]:
        """Every record, or those of one ``namespace``, sorted by namespace and name."""
        return [m for m in self.store.read().models if namespace is None or m.namespace == namespace]

    def remove(self, name: str, namespace: str = DEFAULT_NAMESPACE, *, force: bool = False) -> ModelRecord:
        """Unregister a name (the cached files stay); refused while replicas serve it unless ``force``."""
        self.get(name, namespace)
        live = self.replicas(name, namespace)
        if live and not force:
            raise ModelConflict(f"{len(live)} live replica(s) still serve {name!r} ({namespace}): "
                                + ", ".join(r.replica for r in live),
                                "stop them (or `modelcache models leave`), or pass --force")
        return self.store.update(lambda reg: plan_remove(reg, name, namespace))

    # -- status -----------------------------------------------------------------------------------
    def replicas(self, name: str | None = None, namespace: str | None = None) -> list[Replica]:
        """The live replicas in the cache (of ``name``/``namespace`` only, when given), oldest first."""
        return [r for r in live_replicas(self.cache_dir)
                if (name is None or r.name == name) and (namespace is None or r.namespace == namespace)]

    def status(self, name: str | None = None, namespace: str | None = None, *, disk: bool = False) -> dict[str, Any]:
        """``models_status`` for this cache; ``disk=True`` re-hashes the card files (``verify``)."""
        registry = self.store.read()  # an unreadable registry is an error here, not an empty list
        if name is not None:
            registry.require(validate_namespace(namespace or DEFAULT_NAMESPACE), validate_name(name))
        return models_status(self.cache_dir, disk=disk, namespace=namespace, name=name)

    def verify(self, name: str | None = None, namespace: str | None = None) -> dict[str, Any]:
        """``status`` with the card files re-hashed on disk."""
        return self.status(name, namespace, disk=True)

    # -- replicas ---------------------------------------------------------------------------------
    def _replica_lease(self, name: str, replica: str, namespace: str, force: bool) -> tuple[RepoLayout, str, str]:
        record = self.get(name, namespace)
        validate_replica(replica)
        layout = self._layout(record.repo_id)
        if resolve_commit(layout, record.commit) is None:
            raise NotCached(f"{record.repo_id}@{record.commit[:12]} ({name}) is not in the cache",
                            f"modelcache download {record.repo_id} --revision {record.commit}")
        card = self._checked_card(record, layout, record.commit, force)
        return layout, record.commit, replica_holder(namespace, name, replica, card)

    def join(self, name: str, replica: str, namespace: str = DEFAULT_NAMESPACE, ttl: float = 3600.0,
             force: bool = False) -> LeaseInfo:
        """A replica joins: a lease on the registered commit carrying its card (renew it, or it expires)."""
        layout, commit, holder = self._replica_lease(name, replica, namespace, force)
        return acquire_lease(layout, commit, holder, ttl)

    def replica(self, name: str, replica: str, namespace: str = DEFAULT_NAMESPACE, ttl: float = 60.0,
                force: bool = False) -> Lease:
        """``with mm.replica("llama-70b", "vllm-0"):`` — joined (and renewed) for the block."""
        layout, commit, holder = self._replica_lease(name, replica, namespace, force)
        return Lease(layout, commit, holder, ttl)

    def leave(self, name: str, lease_id: str, namespace: str = DEFAULT_NAMESPACE) -> bool:
        """Release replica lease ``lease_id`` of ``name`` in ``namespace``; False if no live replica holds it."""
        for r in self.replicas(name, namespace):
            if r.lease.lease_id == lease_id:
                return release_lease(self._layout(r.lease.repo_id), lease_id)
        return False

    # -- engines ----------------------------------------------------------------------------------
    def target(self, ref: str, namespace: str | None = None) -> Target:
        """A registered served name (in ``namespace``, default ``default``) or ``REPO_ID[@REV]``."""
        if "@" not in ref and ":" not in ref:
            try:
                validate_name(ref)
                record = self.store.read().get(namespace or DEFAULT_NAMESPACE, ref)
            except ValueError:
                record = None
            if record is not None:
                return Target(record.repo_id, record.commit, record)
            if namespace is not None:
                self.get(ref, namespace)  # raises UnknownModel with a hint
        parsed = parse_repo_ref(ref)
        return Target(parsed.repo_id, parsed.revision or "main")

    def resolve(self, ref: str, namespace: str | None = None, profile: str = "full", verify_card: bool = True) -> Path:
        """The local snapshot path of a name or ``REPO_ID[@REV]``, if an engine can start on it now."""
        validate_profile(profile)
        t = self.target(ref, namespace)
        result = self.cache.check(t.repo_id, t.revision, profile)
        if not result.ready or result.snapshot is None or result.commit is None:
            hint = f"modelcache download {t.repo_id} --revision {t.revision} --profile {profile}"
            if t.record is None and "/" not in t.repo_id:
                hint += f" (or, if {ref!r} is a served name, see `modelcache models ls`)"
            raise NotCached(result.reason, hint)
        if t.record is not None and verify_card:
            self._checked_card(t.record, self._layout(t.repo_id), result.commit, force=False)
        return result.snapshot

    @contextmanager
    def use(self, ref: str, *, namespace: str | None = None, profile: str = "full", replica: str | None = None,
            ttl: float = 60.0, force: bool = False, progress: Progress | None = None) -> Iterator[Ready]:
        """Make ``ref`` ready (download, or wait for another downloader), lease it for the block, and —
        for a registered name — check its card and join as a replica."""
        validate_profile(profile)
        t = self.target(ref, namespace)
        replica = validate_replica(replica or default_replica_id())
        cache = self.cache
        if is_commit(t.revision) and cache.check(t.repo_id, t.revision, profile, record=False).ready:
            cache = ModelCache(cache.settings.with_overrides(offline=True))  # a commit never moves: no network
        with ExitStack() as stack:
            result = stack.enter_context(cache.use(t.repo_id, t.revision, profile=profile, ttl=ttl,
                                                   holder=f"run:{replica}:{os.getpid()}", progress=progress))
            env = {"HF_HUB_CACHE": str(self.cache_dir), "HF_HUB_OFFLINE": "1",
                   "MODELCACHE_SNAPSHOT": str(result.snapshot), "MODELCACHE_REPO_ID": t.repo_id,
                   "MODELCACHE_COMMIT": result.commit}
            card = replica_lease = None
            if t.record is not None:
                layout = self._layout(t.repo_id)
                card = self._checked_card(t.record, layout, result.commit, force)
                holder = replica_holder(t.record.namespace, t.record.name, replica, card)
                replica_lease = stack.enter_context(Lease(layout, result.commit, holder, ttl))
                env.update(MODELCACHE_MODEL_NAME=t.record.name, MODELCACHE_CARD=card)
            yield Ready(t.repo_id, t.revision, result.commit, result.snapshot, env, result.lease_id, t.record, card,
                        replica_lease.info.lease_id if replica_lease and replica_lease.info else None,
                        result.to_dict())
