"""``ModelCache``: the one API the CLI, the server and users call. Composes ``hub`` and ``cache``."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any
from pathlib import Path

import httpx

from ..cache.access import Access, write_access
from ..cache.quota import check_room
from ..cache.readiness import CheckResult, check_revision, download_warnings, resolve_commit
from ..cache.activity import in_progress, repo_guard
from ..cache.layout import RepoLayout
from ..cache.leases import Lease, LeaseInfo, acquire_lease, active_leases, find_lease, is_pinned
from ..cache.publish import ensure_repo_dirs
from ..cache.records import TreeRecord
from ..cache.requests import record_request
from ..cache.usage import record_use
from ..errors import CacheError, EndpointUnreachable, InvalidInput, NotCached
from .ensure import ensure_files, os_error
from .remote import fetch_revision, record_revision
from ..hub.client import HubClient
from ..profiles import select, validate_profile
from ..protocol import FileEntry
from ..progress import NullProgress, Progress
from ..validation import is_commit, validate_revision
from ..settings import Settings

if TYPE_CHECKING:  # (imported where used: `download` does without them, ~15 ms of start-up)
    from ..cache.inventory import RepoInfo
    from ..cache.remove import RemovalPlan
    from .lifecycle import CacheLifecycle

__all__ = ["DownloadResult", "ModelCache"]


@dataclass(frozen=True)
class DownloadResult:
    """What ``download`` did: the commit and snapshot, files and bytes (total, fetched, resumed), seconds.

    ``lease_id``: the lease taken when one was asked for. ``note``: set when an unreachable endpoint
    was answered from the cache.
    """

    repo_id: str
    revision: str
    commit: str
    profile: str
    snapshot: Path
    files: int
    files_fetched: int
    bytes_total: int
    bytes_fetched: int
    bytes_resumed: int
    seconds: float
    lease_id: str | None = None
    note: str | None = None

    def to_dict(self) -> dict[str, object]:
        """JSON-ready dict of the fields (``snapshot`` as a string, ``seconds`` rounded to milliseconds)."""
        d = dict(self.__dict__)
        d["snapshot"] = str(self.snapshot)
        d["seconds"] = round(self.seconds, 3)
        return d


class _Delegated:
    """``ModelCache.gc`` is ``CacheLifecycle.gc`` of the instance's lifecycle component."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, obj: ModelCache | None, objtype: type | None = None) -> Any:
        if obj is None:
            from .lifecycle import CacheLifecycle

            return getattr(CacheLifecycle, self.name)
        return getattr(obj.lifecycle, self.name)


class ModelCache:
    """A huggingface_hub-compatible cache plus the endpoint it downloads from.

    >>> mc = ModelCache()                       # settings from HF_* variables, like huggingface_hub
    >>> path = mc.download("Qwen/Qwen3-0.6B")   # doctest: +SKIP
    >>> mc.check("Qwen/Qwen3-0.6B").ready       # doctest: +SKIP
    True
    """

    def __init__(self, settings: Settings | None = None, *, http: httpx.Client | None = None, **overrides: object) -> None:
        self.settings = settings if settings is not None else Settings.from_process_env(**overrides)  # type: ignore[arg-type]
        self._http = http
        self._client: HubClient | None = None

    @cached_property
    def lifecycle(self) -> CacheLifecycle:
        """Leases, pins, GC, verify, quotas, bundles; each method is also a method of ``ModelCache``."""
        from .lifecycle import CacheLifecycle

        return CacheLifecycle(self.settings, lambda: self.client)

    # -- lifecycle (CacheLifecycle's methods, on the instance) --------------------------------
    lease = _Delegated()
    acquire_lease = _Delegated()
    renew_lease = _Delegated()
    release_lease = _Delegated()
    leases = _Delegated()
    pin = _Delegated()
    unpin = _Delegated()
    pins = _Delegated()
    is_pinned = _Delegated()
    gc = _Delegated()
    verify = _Delegated()
    usage = _Delegated()
    set_budget = _Delegated()
    export = _Delegated()
    import_bundle = _Delegated()

    # -- plumbing ---------------------------------------------------------------------------
    @property
    def cache_dir(self) -> Path:
        """The cache root (``settings.cache_dir``)."""
        return self.settings.cache_dir

    def layout(self, repo_id: str, repo_type: str = "model") -> RepoLayout:
        """The layout of one repo of this cache (the repo id and type validated)."""
        return RepoLayout(self.settings.cache_dir, repo_type, repo_id)

    @property
    def client(self) -> HubClient:
        """The Hub client for the settings' endpoint, made on first use."""
        if self._client is None:
            self._client = HubClient.for_settings(self.settings, http=self._http)
        return self._client

    def close(self) -> None:
        """Close the Hub client if this instance made its HTTP client (one passed as ``http`` stays open).

        Safe to call again; a later use of ``client`` makes a new one.
        """
        if self._client is not None and self._http is None:
            self._client.close()
        self._client = None

    def __enter__(self) -> ModelCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- runtime check ------------------------------------------------------------------------
    def check(self, repo_id: str, revision: str = "main", profile: str = "full", repo_type: str = "model",
              record: bool = True, include: Sequence[str] | None = None, exclude: Sequence[str] | None = None,
              accept: Sequence[str] = ()) -> CheckResult:
        """Can an engine start on this now? Local disk only; never the network.

        Judged by what was asked for the revision (recorded by ``download``), or by ``include``/
        ``exclude`` when given; ``accept`` adds formats (gguf, consolidated, adapter, sentencepiece).
        """
        layout = self.layout(repo_id, repo_type)
        result = check_revision(layout, revision, profile, include, exclude, accept)
        if record and result.ready and result.commit:
            record_use(layout, result.commit)
        return result

    def wait(self, repo_id: str, revision: str = "main", profile: str = "full", repo_type: str = "model",
             timeout: float = 0.0, interval: float = 2.0, on_wait: Callable[[CheckResult], None] | None = None,
             sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic,
             include: Sequence[str] | None = None, exclude: Sequence[str] | None = None,
             accept: Sequence[str] = ()) -> CheckResult:
        """``check`` until ready or ``timeout`` seconds have passed (for init containers)."""
        deadline = clock() + max(0.0, timeout)
        while True:
            result = self.check(repo_id, revision, profile, repo_type, include=include, exclude=exclude,
                                accept=accept)
            if result.ready or clock() >= deadline:
                return result
            if on_wait:
                on_wait(result)
            sleep(min(interval, max(0.05, deadline - clock())))

    # -- download -----------------------------------------------------------------------------
    def download(
        self,
        repo_id: str,
        revision: str = "main",
        *,
        profile: str = "full",
        include: Sequence[str] = (),
        exclude: Sequence[str] = (),
        repo_type: str = "model",
        progress: Progress | None = None,
        lease: tuple[str, float] | None = None,
        refs: Sequence[str] = (),
    ) -> DownloadResult:
        """Fetch what ``profile`` needs into the cache; every file verified before it is visible.

        ``lease=(holder, ttl)`` takes a lease on the revision before the download lets go of it,
        so nothing (a concurrent ``gc``) can remove it in between; its id is in the result.
        ``refs``: more branch names to point at the commit (a Job that pins a commit of ``main``
        passes ``refs=["main"]`` so engines asking for ``main`` offline find it).
        """
        started = time.monotonic()
        validate_revision(revision)
        validate_profile(profile)
        for ref in refs:
            validate_revision(ref)
            if is_commit(ref):
                raise InvalidInput(f"--ref {ref!r} is a commit id", "give a branch or tag name such as main")
        layout = self.layout(repo_id, repo_type)
        progress = progress or NullProgress()

        asked = (tuple(include), tuple(exclude))  # offline, "cached" means: what this call asks is there
        if self.settings.offline:
            result = check_revision(layout, revision, profile, *asked)
            if not result.ready:
                raise NotCached(
                    f"offline and not cached: {result.reason}",
                    "run `modelcache download` where the endpoint is reachable, or unset HF_HUB_OFFLINE",
                )
            record_use(layout, result.commit or revision)
            lease_id = acquire_lease(layout, result.commit, *lease).lease_id if lease and result.commit else None
            return DownloadResult(repo_id, revision, result.commit or "", profile, result.snapshot or layout.folder,
                                  0, 0, 0, 0, 0, time.monotonic() - started, lease_id)

        client = self.client
        try:
            info, tree = fetch_revision(client, layout, revision, on_wait=progress.waiting)
        except EndpointUnreachable as exc:
            # like huggingface_hub: an unreachable endpoint falls back to what the cache has
            cached = check_revision(layout, revision, profile, *asked)
            if not cached.ready or not cached.commit:
                raise
            record_use(layout, cached.commit)
            lease_id = acquire_lease(layout, cached.commit, *lease).lease_id if lease else None
            progress.finish({"ok": True, "cached": True})
            return DownloadResult(repo_id, revision, cached.commit, profile, cached.snapshot or layout.folder,
                                  0, 0, 0, 0, 0, time.monotonic() - started, lease_id,
                                  note=f"endpoint unreachable ({exc.message}); using the cached {revision} "
                                       f"({cached.commit[:12]}), which may be behind")
        commit = info.commit
        wanted = select(tree.files, profile, include, exclude)
        if not wanted and (include or exclude):
            raise InvalidInput(
                f"no file of {repo_id}@{revision} matches the profile and the --include/--exclude patterns",
                "check the patterns against the repo's file list",
            )
        entries = [tree.files[p] for p in wanted]
        _refuse_early_if_no_room(layout, entries)  # before any folder, record or progress line exists

        held: list[LeaseInfo] = []

        def take_lease() -> None:
            if lease is not None:
                held.append(acquire_lease(layout, commit, lease[0], lease[1]))

        try:
            outcome = ensure_files(self.settings, client, layout, tree, entries, progress, before_release=take_lease)
        except BaseException:
            progress.finish({"ok": False})
            raise
        record_request(layout, commit, profile, include, exclude)  # what was asked: `check` judges by it
        record_revision(layout, info, tree, [revision, *refs])
        record_use(layout, commit)
        warnings = download_warnings(layout, commit, list(tree.files), profile, include, exclude)
        result = DownloadResult(
            repo_id=repo_id,
            revision=revision,
            commit=commit,
            profile=profile,
            snapshot=layout.snapshot(commit),
            files=outcome.files,
            files_fetched=outcome.files_fetched,
            bytes_total=outcome.bytes_total,
            bytes_fetched=outcome.bytes_fetched,
            bytes_resumed=outcome.bytes_resumed,
            seconds=time.monotonic() - started,
            lease_id=held[0].lease_id if held else None,
            note="; ".join(warnings) or None,
        )
        progress.finish(result.to_dict())
        return result

    @contextmanager
    def use(self, repo_id: str, revision: str = "main", *, profile: str = "full", holder: str = "",
            ttl: float = 60.0, repo_type: str = "model", progress: Progress | None = None) -> Iterator[DownloadResult]:
        """Make the model ready and hold a lease on it for the ``with`` block (renewed in the background).

        >>> with ModelCache().use("Qwen/Qwen3-0.6B", holder="vllm-0") as ready:   # doctest: +SKIP
        ...     serve(ready.snapshot)
        """
        holder = holder or f"pid-{os.getpid()}"
        result = self.download(repo_id, revision, profile=profile, repo_type=repo_type, progress=progress,
                               lease=(holder, ttl))
        layout = self.layout(repo_id, repo_type)
        existing = find_lease(layout, result.lease_id) if result.lease_id else None
        with Lease(layout, result.commit, holder, ttl, existing=existing):
            yield result

    # -- inventory and removal -----------------------------------------------------------------
    def ls(self, repo_id: str | None = None, repo_type: str = "model") -> list[RepoInfo]:
        """What the cache holds: every repo, or just ``repo_id`` (an empty list when it is not cached)."""
        from ..cache.inventory import scan_cache, scan_repo

        if repo_id is None:
            return scan_cache(self.cache_dir)
        layout = self.layout(repo_id, repo_type)
        return [scan_repo(layout)] if layout.folder.is_dir() else []

    def plan_rm(self, repo_id: str, revision: str | None = None, repo_type: str = "model") -> RemovalPlan:
        """What ``rm`` would remove: every revision of the repo, or one; NotCached if it is not cached.

        Blobs that another revision still uses are kept.
        """
        from ..cache.remove import plan_removal

        layout = self.layout(repo_id, repo_type)
        if not layout.folder.is_dir():
            raise NotCached(f"{repo_id} is not in the cache at {self.cache_dir}", "see `modelcache ls`")
        if revision is None:
            commits = layout.commits()
        else:
            commit = resolve_commit(layout, revision, prefix=True)
            if commit is None:
                raise NotCached(f"revision {revision!r} of {repo_id} is not in the cache", "see `modelcache ls REPO_ID`")
            commits = [commit]
        return plan_removal(layout, commits)

    def rm(self, repo_id: str, revision: str | None = None, repo_type: str = "model", dry_run: bool = False,
           force: bool = False) -> RemovalPlan:
        """Remove the repo, or one revision, as ``plan_rm`` plans it (nothing if ``dry_run``); returns the plan.

        A revision that is pinned, leased, registered (``models add``) or being downloaded is
        in use: ``InUse`` names what holds it, and nothing is removed, unless ``force``. The
        check and the removal happen under the repo guard, so no lease or download can claim a
        revision in between.
        """
        from ..cache.gc_extras import registered_revisions
        from ..cache.remove import execute_removal

        plan = self.plan_rm(repo_id, revision, repo_type)
        if dry_run:
            return plan
        layout = self.layout(repo_id, repo_type)
        stale = self.settings.lock_stale_after
        registered = {} if force else registered_revisions(self.cache_dir)
        with repo_guard(layout, stale):
            held = [] if force else [f"{c[:12]} {why}" for c in plan.commits
                                     if (why := _held_by(layout, c, stale, registered))]
            if held:
                raise InUse(f"{repo_id}: {'; '.join(held)}",
                            "stop what holds it (`modelcache lease ls`, `modelcache unpin`, `modelcache models remove`), "
                            "or pass --force to remove it anyway")
            execute_removal(layout, plan)
        return plan

    # -- import ----------------------------------------------------------------------------------
    def import_folder(self, folder: Path, repo_id: str, revision: str = "main", repo_type: str = "model",
                      access: Access | None = None) -> TreeRecord:
        """Publish a local folder as ``revision`` of ``repo_id``, under a commit id computed from its files.

        ``revision`` must be a branch or tag name (InvalidInput for a commit id). ``access``, when
        given, is recorded as who may read the repo when it is served.
        """
        validate_revision(revision)
        if is_commit(revision):
            raise InvalidInput("import takes a branch or tag name, not a commit id",
                               "the commit id is computed from the files; use e.g. --revision main")
        from ..cache.importer import import_folder

        layout = self.layout(repo_id, repo_type)
        ensure_repo_dirs(layout)
        try:
            if access is not None:  # before any file is visible: a kill never leaves it unrestricted
                write_access(layout, access)
            return import_folder(layout, Path(folder), revision)
        except OSError as exc:
            raise os_error(exc, layout) from None



def _refuse_early_if_no_room(layout: RepoLayout, entries: Sequence[FileEntry]) -> None:
    """The budget/disk check of ``ensure_files``, made before it creates anything: a refused
    download leaves no empty snapshot folder, record or progress line behind."""
    needed = 0
    for e in entries:
        if layout.blob(e.etag).exists():
            continue
        try:
            needed += max(0, e.size - os.stat(layout.partial(e.etag)).st_size)
        except OSError:
            needed += e.size
    check_room(layout.cache_dir, needed, layout.repo_id)


class InUse(CacheError):
    """``rm`` of a revision something holds (a pin, a lease, a registration, a download)."""

    code = "in_use"
    exit_code = 1


def _held_by(layout: RepoLayout, commit: str, stale: float, registered: dict[tuple[str, str], str]) -> str | None:
    """Why ``commit`` is in use, or None."""
    if is_pinned(layout, commit):
        return "is pinned"
    leases = active_leases(layout, commit)
    if leases:
        return f"is leased by {', '.join(sorted({x.holder for x in leases}))}"
    if in_progress(layout, commit, stale):
        return "is being downloaded"
    why = registered.get((layout.repo_id, commit))
    return f"is {why}" if why else None
