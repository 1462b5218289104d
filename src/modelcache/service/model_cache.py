"""``ModelCache``: the one API the CLI, the server and users call. Composes ``hub`` and ``cache``."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from ..cache.access import Access, write_access
from ..cache.readiness import CheckResult, check_revision, resolve_commit
from ..cache.importer import import_folder
from ..cache.inventory import RepoInfo, scan_cache, scan_repo
from ..cache.layout import RepoLayout
from ..cache.leases import Lease, LeaseInfo, acquire_lease, find_lease
from ..cache.publish import ensure_repo_dirs
from ..cache.records import TreeRecord, read_record
from ..cache.remove import RemovalPlan, execute_removal, plan_removal
from ..cache.usage import record_use
from ..errors import EndpointUnreachable, InvalidInput, NotCached
from .ensure import ensure_files, os_error
from ..hub.client import HubClient
from .lifecycle import Lifecycle
from ..profiles import select, validate_profile
from ..progress import NullProgress, Progress
from ..validation import is_commit, validate_repo_id, validate_repo_type, validate_revision
from ..settings import Settings

__all__ = ["DownloadResult", "ModelCache"]


@dataclass(frozen=True)
class DownloadResult:
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
        d = dict(self.__dict__)
        d["snapshot"] = str(self.snapshot)
        d["seconds"] = round(self.seconds, 3)
        return d


class ModelCache(Lifecycle):
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

    # -- plumbing ---------------------------------------------------------------------------
    @property
    def cache_dir(self) -> Path:
        return self.settings.cache_dir

    def layout(self, repo_id: str, repo_type: str = "model") -> RepoLayout:
        validate_repo_type(repo_type)
        validate_repo_id(repo_id)
        return RepoLayout(self.cache_dir, repo_type, repo_id)

    @property
    def client(self) -> HubClient:
        if self._client is None:
            self._client = HubClient.for_settings(self.settings, http=self._http)
        return self._client

    def close(self) -> None:
        if self._client is not None and self._http is None:
            self._client.close()
        self._client = None

    def __enter__(self) -> ModelCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- runtime check ------------------------------------------------------------------------
    def check(self, repo_id: str, revision: str = "main", profile: str = "full", repo_type: str = "model",
              record: bool = True) -> CheckResult:
        """Can an engine start on this now? Local disk only; never the network."""
        layout = self.layout(repo_id, repo_type)
        result = check_revision(layout, revision, profile)
        if record and result.ready and result.commit:
            record_use(layout, result.commit)
        return result

    def wait(self, repo_id: str, revision: str = "main", profile: str = "full", repo_type: str = "model",
             timeout: float = 0.0, interval: float = 2.0, on_wait: Callable[[CheckResult], None] | None = None,
             sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic) -> CheckResult:
        """``check`` until ready or ``timeout`` seconds have passed (for init containers)."""
        deadline = clock() + max(0.0, timeout)
        while True:
            result = self.check(repo_id, revision, profile, repo_type)
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

        if self.settings.offline:
            result = check_revision(layout, revision, profile)
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
            info = client.revision_info(repo_type, repo_id, revision, on_wait=progress.waiting)
        except EndpointUnreachable as exc:
            # like huggingface_hub: an unreachable endpoint falls back to what the cache has
            cached = check_revision(layout, revision, profile)
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
        tree = read_record(layout.tree_record(commit), commit)
        if tree is None:
            tree = TreeRecord.of(commit, client.list_files(repo_type, repo_id, commit, on_wait=progress.waiting))
        wanted = select(tree.files, profile, include, exclude)
        if not wanted and (include or exclude):
            raise InvalidInput(
                f"no file of {repo_id}@{revision} matches the profile and the --include/--exclude patterns",
                "check the patterns against the repo's file list",
            )
        entries = [tree.files[p] for p in wanted]

        held: list[LeaseInfo] = []

        def take_lease() -> None:
            if lease is not None:
                held.append(acquire_lease(layout, commit, lease[0], lease[1]))

        try:
            outcome = ensure_files(self.settings, client, layout, tree, entries, progress, before_release=take_lease)
        except BaseException:
            progress.finish({"ok": False})
            raise
        for name in {revision, *refs} - {commit}:
            layout.write_ref(name, commit)
        write_access(layout, Access(gated=info.gated, private=info.private))
        record_use(layout, commit)
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
        if repo_id is None:
            return scan_cache(self.cache_dir)
        layout = self.layout(repo_id, repo_type)
        return [scan_repo(layout)] if layout.folder.is_dir() else []

    def plan_rm(self, repo_id: str, revision: str | None = None, repo_type: str = "model") -> RemovalPlan:
        layout = self.layout(repo_id, repo_type)
        if not layout.folder.is_dir():
            raise NotCached(f"{repo_id} is not in the cache at {self.cache_dir}", "see `modelcache ls`")
        if revision is None:
            commits = layout.commits()
        else:
            commit = resolve_commit(layout, revision)
            if commit is None:
                raise NotCached(f"revision {revision!r} of {repo_id} is not in the cache", "see `modelcache ls REPO_ID`")
            commits = [commit]
        return plan_removal(layout, commits)

    def rm(self, repo_id: str, revision: str | None = None, repo_type: str = "model", dry_run: bool = False) -> RemovalPlan:
        plan = self.plan_rm(repo_id, revision, repo_type)
        if not dry_run:
            execute_removal(self.layout(repo_id, repo_type), plan)
        return plan

    # -- import ----------------------------------------------------------------------------------
    def import_folder(self, folder: Path, repo_id: str, revision: str = "main", repo_type: str = "model",
                      access: Access | None = None) -> TreeRecord:
        validate_revision(revision)
        if is_commit(revision):
            raise InvalidInput("import takes a branch or tag name, not a commit id",
                               "the commit id is computed from the files; use e.g. --revision main")
        layout = self.layout(repo_id, repo_type)
        ensure_repo_dirs(layout)
        try:
            record = import_folder(layout, Path(folder), revision)
            if access is not None:
                write_access(layout, access)
            return record
        except OSError as exc:
            raise os_error(exc, layout) from None

