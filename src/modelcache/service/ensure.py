"""Bring a set of files of one commit into the cache, safely beside other processes and hosts.

Composes ``hub`` (transfer engine) and ``cache`` (layout, publishing, locks):

1. An activity marker says "a download works on this commit" (GC keeps its hands off).
2. The plan (pure) says per file: present, link an existing blob, or fetch.
3. The cache's budget and the disk's free space are checked before any byte moves.
4. Each blob to fetch is claimed with a lock file (works without ``flock``). Blobs claimed by
   another process are not fetched again: we wait for them to appear and link them, or take
   the lock over (and resume from the partial it left) when that process died.
5. Afterwards every wanted file is checked on disk; anything that vanished meanwhile (a
   concurrent ``gc``) is fetched again. Correctness never depends on the locks.
"""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..cache.activity import activity, repo_guard
from ..cache.layout import RepoLayout
from ..cache.locks import FileLock
from ..cache.publish import ensure_repo_dirs, install_blob_fd, install_blobs_bytes, link_file, publish_record
from ..cache.quota import check_room
from ..protocol import FileEntry
from ..cache.records import TreeRecord
from ..errors import CacheError
from ..files import HeldFolders
from ..hub.client import HubClient
from ..hub.download.assembly import Assembly, state_path_for
from ..hub.download.partial import resumable_in_place
from ..hub.download.engine import Backoff, FileJob, TransferEngine
from ..hub.download.plan import FilePlan, LocalState, plan_transfer
from ..progress import Progress
from ..settings import Settings

__all__ = ["FetchOutcome", "OnStart", "ensure_files", "os_error"]

OnStart = Callable[[FileEntry, "Assembly | None"], None]


@dataclass(frozen=True)
class FetchOutcome:
    """What ``ensure_files`` did: files and bytes wanted, fetched from upstream, resumed from disk."""

    files: int
    files_fetched: int
    bytes_total: int
    bytes_fetched: int
    bytes_resumed: int
    bytes_waited: int
    """Bytes another process fetched while we waited for its lock (reused, not downloaded)."""


def _size(p: Path) -> int | None:
    try:
        return p.stat().st_size
    except OSError:
        return None


def _drop_installed_partial(layout: RepoLayout, etag: str, size: int | None, blobs: int) -> None:
    """Once ``blobs/<etag>`` is there (verified, installed), a partial and resume state for it
    are garbage: a run killed right after installing leaves its partial name on the blob's
    inode, and a writer that lost its lock may have left its own. Remove both names (a writer
    still holding its file keeps its fd and installs through its private name, which is then a
    no-op), so nothing ever resumes into an installed blob or sits on the disk until GC.
    Every name is reached through ``blobs`` (the run's fd on ``blobs/``). Best effort: a name
    that cannot be removed (another tenant's, in a sticky folder) is left to ``gc`` — the blob is
    in place, the download goes on."""
    partial = layout.partial(etag).name
    try:
        b = os.lstat(etag, dir_fd=blobs)
    except OSError:
        return  # no blob: the partial is all there is (resumed later)
    blob_ok = stat.S_ISREG(b.st_mode)
    try:
        a = os.lstat(partial, dir_fd=blobs)
    except OSError:
        a = None
    if a is not None:
        if (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino) or (blob_ok and (size is None or b.st_size == size)):
            if _unlink_at(partial, blobs):
                a = None
    if blob_ok and a is None:
        _unlink_at(state_path_for(layout.partial(etag)).name, blobs)


def _unlink_at(name: str, folder: int) -> bool:
    """Remove ``name`` from the folder of ``folder``; True when it is gone (best effort: False
    when it cannot be removed — left to ``gc``)."""
    try:
        os.unlink(name, dir_fd=folder)
    except FileNotFoundError:
        pass
    except OSError:
        return False
    return True


def local_state(layout: RepoLayout, commit: str, entry: FileEntry) -> LocalState:
    return LocalState(
        snapshot_ok=_size(layout.snapshot_file(commit, entry.path)) == entry.size,
        blob_size=_size(layout.blob(entry.etag)),
    )


def ensure_files(
    settings: Settings,
    client: HubClient,
    layout: RepoLayout,
    record: TreeRecord,
    entries: list[FileEntry],
    progress: Progress,
    *,
    poll: float = 0.5,
    sleep: Callable[[float], None] = time.sleep,
    before_release: Callable[[], None] | None = None,
    on_start: OnStart | None = None,
) -> FetchOutcome:
    """Make every file of ``entries`` (files of ``record``'s commit) present and verified.

    ``before_release`` runs while the revision is still marked in progress (e.g. take a
    lease), so GC can never slip in between the download and its first user.
    ``on_start(entry, assembly)`` is called for each blob this process fetches, before any byte
    moves (a mirror streams from the assembly), and with ``None`` for a blob another process
    is fetching (its bytes become visible only once verified)."""
    commit = record.commit
    ensure_repo_dirs(layout)
    marker = activity(layout, commit, settings.lock_stale_after)
    with repo_guard(layout, settings.lock_stale_after):  # GC removes nothing in progress from here on
        marker.try_acquire()
    try:
        publish_record(layout, record)
        plan = plan_transfer(entries, {e.path: local_state(layout, commit, e) for e in entries})
        # what partials really hold (allocated blocks, not their apparent size), and only when
        # they will be resumed in place (a copied one needs its room again until the swap)
        to_fetch = list(plan.to_fetch)
        if len(to_fetch) > 32:  # one listing of blobs/ instead of one lstat per file
            partials = _partial_names(layout)
            to_fetch = [fp for fp in to_fetch if layout.partial(fp.entry.etag).name in partials]
        partial_bytes = sum(resumable_in_place(layout.partial(fp.entry.etag), fp.entry.etag, fp.entry.size)
                            for fp in to_fetch)
        check_room(layout.cache_dir, max(0, plan.bytes_to_fetch - partial_bytes), layout.repo_id)
        progress.start(layout.repo_id, commit, plan)
        totals = {"fetched": 0, "resumed": 0, "waited": 0, "files": 0}
        todo = entries
        for _round in range(3):
            round_plan = plan if _round == 0 else plan_transfer(
                todo, {e.path: local_state(layout, commit, e) for e in todo})
            _run_round(settings, client, layout, commit, round_plan.files, progress, totals, poll, sleep,
                       on_start)
            todo = [e for e in entries if _size(layout.snapshot_file(commit, e.path)) != e.size]
            if not todo:
                break
        else:
            raise CacheError(
                f"{len(todo)} file(s) of {layout.repo_id} vanished from the cache while downloading "
                f"(e.g. {todo[0].path})",
                "is a `modelcache gc` or `rm` running on this cache? run the download again",
            )
        if before_release is not None:
            before_release()
        return FetchOutcome(len(plan.files), len(plan.to_fetch), plan.bytes_total, totals["fetched"],
                            totals["resumed"], totals["waited"])
    finally:
        marker.release()


def _partial_names(layout: RepoLayout) -> set[str]:
    """Names of the partials in ``blobs/`` (read only: a listing through a planted link lists
    nothing that is written to)."""
    try:
        return {n for n in os.listdir(layout.blobs) if n.endswith(".mc.incomplete")}
    except OSError:
        return set()


def _run_round(settings: Settings, client: HubClient, layout: RepoLayout, commit: str,
               files: tuple[FilePlan, ...], progress: Progress, totals: dict[str, int], poll: float,
               sleep: Callable[[float], None], on_start: OnStart | None = None) -> None:
    """One pass over ``files``: claim, fetch, install and link what is ours; wait for (or take
    over) what another process fetches. The folders written into (``blobs/``, the lock folder,
    the snapshot's folders, ``.modelcache/tmp/``) are opened from the cache root once for the
    round, without following links, and every write goes through those descriptors."""
    with HeldFolders(layout.cache_dir) as folders:
        try:
            with folders.held(layout.blobs, create=True) as blobs:
                _round(settings, client, layout, commit, files, progress, totals, poll, sleep, on_start,
                       folders, blobs)
        except OSError as exc:
            raise os_error(exc, layout) from None


def _round(settings: Settings, client: HubClient, layout: RepoLayout, commit: str,
           files: tuple[FilePlan, ...], progress: Progress, totals: dict[str, int], poll: float,
           sleep: Callable[[float], None], on_start: OnStart | None, folders: HeldFolders, blobs: int) -> None:
    locks: dict[str, FileLock] = {}

    def claim(fp: FilePlan) -> bool:
        lk = FileLock(layout.blob_lock(fp.entry.etag), purpose=f"fetch {layout.repo_id}/{fp.entry.path}",
                      stale_after=settings.lock_stale_after, folders=folders)
        if lk.try_acquire():
            locks[fp.entry.etag] = lk
            return True
        return False

    def blob_ready(e: FileEntry) -> bool:
        return _size(layout.blob(e.etag)) == e.size

    def install(entry: FileEntry, fd: int, private: Path) -> Path | None:
        return install_blob_fd(layout, entry.etag, fd, private, folders)

    stale: set[str] = set()  # etags of small files with a partial or resume state an older run left

    def install_small(items: list[tuple[FileEntry, bytes]]) -> None:
        install_blobs_bytes(layout, [(e.etag, data) for e, data in items], folders)
        for e, _data in items:
            if e.etag in stale:
                _drop_installed_partial(layout, e.etag, e.size, blobs)

    def install_bytes(entry: FileEntry, data: bytes) -> None:  # (one file: what the batch does)
        install_small([(entry, data)])

    def publish(entry: FileEntry) -> None:
        link_file(layout, commit, entry, folders)
        progress.file_done(entry.path)
        lk = locks.pop(entry.etag, None)
        if lk is not None:
            lk.release()

    def link(fp: FilePlan) -> None:
        _drop_installed_partial(layout, fp.entry.etag, fp.entry.size, blobs)
        link_file(layout, commit, fp.entry, folders)
        progress.file_done(fp.entry.path)

    def fetch(batch: list[FilePlan], small: list[FilePlan] = ()) -> list[FilePlan]:  # type: ignore[assignment]
        """Fetch ``batch`` (locked) and ``small`` (in memory, no lock); returns the files whose lock
        another process took over meanwhile."""
        if not batch and not small:
            return []
        if batch:
            _sweep_leftovers(layout, {fp.entry.etag for fp in batch}, blobs)
        if small:  # (one listing, not three lookups per file: most runs find none)
            stale.update(_partial_etags(blobs) & {fp.entry.etag for fp in small})
        url = lambda fp: client.file_url(layout.repo_type, layout.repo_id, commit, fp.entry.path)  # noqa: E731
        jobs = [FileJob(fp.entry, url(fp), layout.partial(fp.entry.etag), publish, install_bytes=install_bytes)
                for fp in small]
        jobs += [FileJob(fp.entry, url(fp), layout.partial(fp.entry.etag), publish, on_start=_bind(on_start, fp.entry),
                         fence=locks[fp.entry.etag].still_mine, install=install, folder=blobs) for fp in batch]
        engine = TransferEngine(
            client, connections=settings.connections, chunk_size=settings.chunk_size,
            backoff=Backoff(base=settings.retry_base, cap=settings.retry_cap, attempts=settings.retries), on_bytes=progress.advance, repo_id=layout.repo_id,
            checkpoint_bytes=settings.checkpoint_bytes, on_wait=progress.waiting, install_small=install_small,
        )
        try:
            engine.run(jobs)
        finally:
            totals["fetched"] += engine.stats.bytes_fetched
            totals["resumed"] += engine.stats.bytes_resumed
        lost = {j.entry.etag for j in engine.lost}
        for etag in lost:
            lk = locks.pop(etag, None)
            if lk is not None:
                lk.release()  # (a no-op on the new holder's lock: it is not ours any more)
        return [fp for fp in batch if fp.entry.etag in lost]

    def sort(fp: FilePlan, mine: list[FilePlan], theirs: list[FilePlan]) -> None:
        """Ours to fetch (claimed), done meanwhile (linked), or another process's (wait)."""
        if not claim(fp):
            theirs.append(fp)
        elif blob_ready(fp.entry):  # finished by another process a moment ago
            locks.pop(fp.entry.etag).release()
            link(fp)
        else:
            mine.append(fp)

    try:
        mine: list[FilePlan] = []
        theirs: list[FilePlan] = []
        small: list[FilePlan] = []  # fetched whole in memory, no lock (see FileJob.install_bytes)
        for fp in files:
            if fp.action != "fetch":
                continue
            if fp.entry.size <= settings.small_file_bytes:
                small.append(fp)
            else:
                sort(fp, mine, theirs)
        if on_start is not None:
            for fp in small:
                on_start(fp.entry, None)  # its bytes become visible once verified, as the blob
        lost = fetch(mine, small)  # files whose lock another process took over while we fetched them
        theirs.extend(lost)
        if on_start is not None:
            for fp in theirs:
                on_start(fp.entry, None)
        while theirs:
            waiting: list[FilePlan] = []
            batch: list[FilePlan] = []
            for fp in theirs:
                if blob_ready(fp.entry):
                    link(fp)
                    totals["waited"] += fp.entry.size
                    progress.advance(fp.entry.path, fp.entry.size)
                else:  # the other process may be done or dead: take over (resuming its partial)
                    sort(fp, batch, waiting)
            waiting.extend(fetch(batch))
            theirs = waiting
            if theirs and not batch:
                sleep(poll)
        for fp in files:
            if fp.action == "link":
                link(fp)
    finally:
        for lk in locks.values():
            lk.release()


def _bind(on_start: OnStart | None, entry: FileEntry) -> Callable[[Assembly], None] | None:
    if on_start is None:
        return None
    return lambda asm: on_start(entry, asm)


_LEFTOVER_KINDS = (".w.incomplete", ".link.incomplete", ".claim.incomplete", ".install.incomplete")


def _partial_etags(blobs: int) -> set[str]:
    """The etags that have a shared partial or resume state in ``blobs/`` (the run's fd on it)."""
    try:
        with os.scandir(blobs) as it:
            return {e.name.split(".", 1)[0] for e in it if e.name.endswith((".mc.incomplete", ".mc.state"))}
    except OSError:
        return set()


def _sweep_leftovers(layout: RepoLayout, etags: set[str], blobs: int) -> None:
    """Before fetching blobs whose locks we hold: remove the private names other writers left
    for them (killed mid-claim or mid-copy; or a stale holder, which then cannot install and
    stops). They may hold a whole copy of a partial: disk is freed now, not at the next ``gc``.
    The shared partial and whatever shares its inode are kept (that is what we resume).
    ``blobs`` is the run's fd on ``blobs/``: listed and cleaned through it, never by path."""
    try:
        with os.scandir(blobs) as it:
            entries = {e.name: e for e in it}
    except OSError:
        return
    keep: set[tuple[int, int]] = set()
    for etag in etags:
        partial = entries.get(layout.partial(etag).name)
        if partial is not None:
            try:
                st = partial.stat(follow_symlinks=False)
                keep.add((st.st_dev, st.st_ino))
            except OSError:
                pass
    for name, entry in entries.items():
        if not name.endswith(_LEFTOVER_KINDS) or name.split(".", 1)[0] not in etags:
            continue
        try:
            st = entry.stat(follow_symlinks=False)
            if (st.st_dev, st.st_ino) not in keep:
                os.unlink(name, dir_fd=blobs)
        except OSError:
            pass


def os_error(exc: OSError, layout: RepoLayout) -> CacheError:
    """The ``CacheError`` (one line, with the fix) for an OS error while writing ``layout``'s repo:
    disk full, no permission / read-only, or anything else."""
    import errno

    if exc.errno == errno.ENOSPC:
        return CacheError(
            f"the disk holding {layout.cache_dir} is full",
            "free space (`modelcache gc`, `modelcache rm`) and run the same command again: it resumes",
        )
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return CacheError(
            f"cannot write to the cache at {layout.cache_dir}: {exc.strerror}",
            "give the user write access, or point --cache-dir / HF_HUB_CACHE at a writable directory",
        )
    return CacheError(f"filesystem error in {layout.folder}: {exc.strerror or exc}", "check the cache directory")

