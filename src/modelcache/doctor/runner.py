"""Run every check in order, gathering facts once and skipping what cannot be known.

Order: token, endpoint, token validity and repo access (network; none with ``offline``, and
no token or repo checks when the endpoint cannot be reached), then the cache directory, its
filesystem, owner/group/mode, a write test (none with ``read_only``), free space against what
the repo still needs, and cache hit or miss.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from ..cache.readiness import check_revision, resolve_commit
from ..cache.layout import RepoLayout
from ..cache.quota import cache_usage
from ..protocol import FileEntry
from ..cache.records import read_record
from ..errors import (
    EndpointUnreachable,
    HubError,
    ModelCacheError,
    ProtocolError,
    TransientError,
)
from ..service.ensure import local_state
from ..hub.client import HubClient, RevisionInfo
from ..hub.retry import RetryPolicy
from ..profiles import select, validate_profile
from ..validation import validate_repo_id, validate_revision
from ..settings import Settings
from .checks import (
    can_access,
    check_cache,
    check_cache_dir,
    check_filesystem,
    check_permissions,
    check_space,
    check_writable,
)
from .findings import Finding, Report
from .netchecks import (
    TokenCheck,
    classify_unreachable,
    local_token_findings,
    token_findings,
)
from .system import (
    Owner,
    current_user,
    disk_free,
    find_mount,
    is_read_only_mount,
    nearest_existing,
    owner_of,
    write_probe,
)

__all__ = ["DoctorOptions", "TokenChecker", "run_doctor"]

TokenChecker = Callable[[Settings, str | None], Sequence[TokenCheck]]
"""``cli.token.run_checks``: injected, so this package does not import the CLI."""

ORDER = ("token", "token-file", "endpoint", "transport", "token-valid", "repo-access",
         "cache-dir", "filesystem", "permissions", "writable", "free-space", "cache")
MAX_FILES_STATED = 5000


@dataclass(frozen=True)
class DoctorOptions:
    """What ``doctor`` examines: an optional repo (revision, profile), read-only mode, probe timeout, mount table."""

    repo_id: str | None = None
    revision: str = "main"
    profile: str = "full"
    read_only: bool = False
    """The cache is mounted read-only on purpose (an engine pod): unwritable is fine, no write test."""
    probe_timeout: float = 5.0
    mounts_file: str = "/proc/mounts"


@dataclass
class _Upstream:
    info: RevisionInfo | None = None
    files: Mapping[str, FileEntry] | None = None
    note: str = ""
    findings: list[Finding] = field(default_factory=list)


def run_doctor(settings: Settings, options: DoctorOptions, token_checks: TokenChecker | None = None) -> Report:
    """Run every check and return the report, sorted in the documented order.

    May use the network (endpoint, token, repo access) unless ``settings.offline``; blocks up to the
    probe timeouts. Raises ``InvalidInput`` for a bad repo id, revision or profile.
    """
    repo, rev = options.repo_id, options.revision
    validate_profile(options.profile)
    validate_revision(rev)
    layout = None
    if repo is not None:
        validate_repo_id(repo)
        layout = RepoLayout(settings.cache_dir, "model", repo)
    up = _network(settings, options, token_checks, layout)
    findings = up.findings + _local(settings, options, layout, up)
    findings.sort(key=lambda f: ORDER.index(f.name) if f.name in ORDER else len(ORDER))
    context = {"cache_dir": str(settings.cache_dir), "endpoint": settings.endpoint, "offline": settings.offline,
               "repo_id": repo, "revision": rev if repo else None, "profile": options.profile if repo else None,
               "read_only": options.read_only}
    return Report(findings, context)


# -- network ------------------------------------------------------------------------------------
def _network(settings: Settings, options: DoctorOptions, token_checks: TokenChecker | None,
             layout: RepoLayout | None) -> _Upstream:
    up = _Upstream()
    report = settings.token.inspect()
    configured = settings.token.configured
    repo = options.repo_id
    if settings.offline:
        up.note = "offline: not compared with upstream"
        up.findings = [Finding("endpoint", "skip", "offline (--offline / HF_HUB_OFFLINE): no network checks"),
                       *local_token_findings(report, configured, "offline"), *_repo_skip(repo, "offline")]
        return up
    client = HubClient.for_settings(settings, timeout=options.probe_timeout,
                                    retry=RetryPolicy(deadline=2 * options.probe_timeout))  # a diagnosis: quick
    try:
        endpoint, reachable = _probe(client, settings.endpoint, options, up)
        if not reachable:
            up.note = "not compared with upstream (endpoint unreachable)"
            why = "the endpoint cannot be reached"
            up.findings = [endpoint, *local_token_findings(report, configured, why), *_repo_skip(repo, why)]
            return up
        if token_checks is not None:
            checks = token_checks(settings, f"{repo}@{options.revision}" if repo else None)
            up.findings = [endpoint, *token_findings(checks, report, configured, repo)]
        else:
            up.findings = [endpoint, *local_token_findings(report, configured, "no token checker given")]
        if up.info is not None and layout is not None:
            commit = up.info.commit
            record = read_record(layout.tree_record(commit), commit)
            try:
                up.files = record.files if record else {e.path: e for e in client.list_files("model", repo, commit)}  # type: ignore[arg-type]
            except ModelCacheError as exc:
                up.note = f"the endpoint's file list is unavailable ({exc.message})"
    finally:
        client.close()
    return up


def _repo_skip(repo: str | None, why: str) -> list[Finding]:
    return [Finding("repo-access", "skip", f"access to {repo} not checked: {why}")] if repo else []


def _probe(client: HubClient, endpoint: str, options: DoctorOptions, up: _Upstream) -> tuple[Finding, bool]:
    """A cheap request with a short timeout: the revision (gives the upstream commit) or the root."""
    repo, rev, t = options.repo_id, options.revision, options.probe_timeout
    if repo is None:
        try:
            resp = client.http.request("HEAD", endpoint + "/", timeout=t)
        except httpx.HTTPError as exc:
            return classify_unreachable(endpoint, str(exc) or type(exc).__name__, t), False
        if resp.status_code >= 500:
            return _failing(endpoint, resp.status_code), False
        return Finding("endpoint", "ok", f"endpoint {endpoint} answers (HTTP {resp.status_code})",
                       data={"endpoint": endpoint}), True
    try:
        up.info = client.revision_info("model", repo, rev)
    except EndpointUnreachable as exc:
        return classify_unreachable(endpoint, exc.message, t), False
    except TransientError as exc:
        if "answered HTTP" in exc.message:
            return Finding("endpoint", "fail", f"{endpoint} answers, but fails: {exc.message}", exc.hint), False
        return classify_unreachable(endpoint, exc.message, t), False
    except ProtocolError as exc:
        return Finding("endpoint", "fail", f"{endpoint} answers, but not as a Hugging Face-compatible hub: "
                       f"{exc.message}", "check HF_ENDPOINT / --endpoint (the Hub, a mirror, or `modelcache serve`)"), False
    except HubError as exc:
        return Finding("endpoint", "ok", f"endpoint {endpoint} answers (about {repo}@{rev}: {exc.code})",
                       data={"endpoint": endpoint}), True
    return Finding("endpoint", "ok", f"endpoint {endpoint} answers: {repo}@{rev} is {up.info.commit[:12]} upstream",
                   data={"endpoint": endpoint, "upstream_commit": up.info.commit}), True


def _failing(endpoint: str, status: int) -> Finding:
    return Finding("endpoint", "fail", f"{endpoint} answers HTTP {status}: the server is failing",
                   "retry later; if it persists, ask the endpoint's operator", {"endpoint": endpoint, "status": status})


# -- local ----------------------------------------------------------------------------------------
def _local(settings: Settings, options: DoctorOptions, layout: RepoLayout | None, up: _Upstream) -> list[Finding]:
    cache_dir, read_only = settings.cache_dir, options.read_only
    exists, is_dir = cache_dir.exists(), cache_dir.is_dir()
    out = [check_cache_dir(cache_dir, exists, is_dir, read_only)]
    if exists and not is_dir:
        return out
    mount = find_mount(cache_dir, options.mounts_file)
    ro_mount = is_read_only_mount(cache_dir) or bool(mount and mount.read_only)
    out.append(check_filesystem(cache_dir, mount, ro_mount))

    user = current_user()
    top = owner_of(cache_dir if exists else nearest_existing(cache_dir))
    dirs = [top] if top else []
    commit = None
    if layout is not None and exists:
        try:
            commit = resolve_commit(layout, options.revision)
        except OSError:
            commit = None
        for d in (layout.folder, layout.blobs, layout.snapshots, layout.refs, cache_dir / ".locks"):
            o = owner_of(d) if d.is_dir() else None
            if o is not None:
                dirs.append(o)
    out.append(check_permissions(cache_dir, dirs, _snapshot_files(layout, commit), user, read_only, exists))

    predicted_write = bool(top) and can_access(top, user)[1]  # type: ignore[arg-type]
    probes: list[tuple[Path, OSError | None]] = []
    if not read_only and exists and not ro_mount:
        probes.append((cache_dir, write_probe(cache_dir)))
        if layout is not None and layout.blobs.is_dir() and probes[0][1] is None:
            probes.append((layout.blobs, write_probe(layout.blobs)))
    out.append(check_writable(cache_dir, exists, read_only, ro_mount, probes, predicted_write))

    out.append(_space(settings, options, layout, up, exists, commit))
    if layout is not None:
        out.append(_cache_state(layout, options, up))
    return out


def _snapshot_files(layout: RepoLayout | None, commit: str | None) -> list[Owner]:
    if layout is None or commit is None:
        return []
    owners: list[Owner] = []
    try:
        for p in layout.snapshot(commit).rglob("*"):
            if len(owners) >= MAX_FILES_STATED:
                break
            o = owner_of(p)
            if o is not None and not o.is_dir:
                owners.append(o)
    except OSError:
        pass
    return owners


def _still_needed(layout: RepoLayout, commit: str, files: Mapping[str, FileEntry], profile: str) -> int:
    """Bytes of the profile's files that are neither in the snapshot nor in ``blobs/`` at the right size."""
    need = 0
    for path in select(files, profile):
        entry = files[path]
        state = local_state(layout, commit, entry)
        if not state.snapshot_ok and state.blob_size != entry.size:
            need += entry.size
    return need


def _space(settings: Settings, options: DoctorOptions, layout: RepoLayout | None, up: _Upstream, exists: bool,
           commit: str | None) -> Finding:
    free = disk_free(settings.cache_dir)
    used, budget = 0, None
    if exists:
        try:
            usage = cache_usage(settings.cache_dir)
            used, budget = usage.used, usage.budget
        except OSError:
            pass
    needed, source = None, ""
    if layout is not None:
        try:
            if up.info is not None and up.files is not None:
                needed, source = _still_needed(layout, up.info.commit, up.files, options.profile), "from the endpoint's file list"
            elif commit is not None and (record := read_record(layout.tree_record(commit), commit)) is not None:
                needed, source = _still_needed(layout, commit, record.files, options.profile), "from the completeness record"
            else:
                source = ("offline, and not cached" if settings.offline
                          else up.note or "the endpoint gave no file list, and it is not cached")
        except (OSError, ModelCacheError):
            source = "the cache cannot be read"
    return check_space(options.repo_id, needed, source, free, used, budget, options.read_only)


def _cache_state(layout: RepoLayout, options: DoctorOptions, up: _Upstream) -> Finding:
    try:
        result = check_revision(layout, options.revision, options.profile)
        refs = layout.all_refs()
    except OSError as exc:
        return Finding("cache", "fail", f"cannot read {layout.folder}: {exc.strerror or exc}",
                       "fix the owner or mode as the permissions line says")
    upstream = up.info.commit if up.info is not None else None
    return check_cache(result, upstream, refs, options.read_only, up.note)
