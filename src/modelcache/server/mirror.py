"""Read-through mirror: what the cache misses is fetched from an upstream Hub, once.

The mirror is a client of the service layer: a revision is resolved and recorded by
``service.remote`` and every blob comes in through ``service.ensure.ensure_files``, the same
path as ``modelcache download`` — with its blob lock files, activity markers, quota check and
publish step. So a mirror, other replicas of it and download Jobs on one volume coordinate
through the cache's own lock files: a big blob is fetched once per volume, not once per process
(files up to ``Settings.small_file_bytes`` take no lock: at most once per process).

- Revision lookups go upstream and are remembered for ``ttl`` seconds (``main`` may move),
  one upstream call per (repo, revision) at a time however many callers ask (single flight).
  A remembered answer is used only while its record is still on disk (a ``gc`` or ``rm``
  makes the mirror ask again). An unreachable or failing upstream falls back to what is
  cached; with nothing cached the caller gets ``UpstreamUnavailable`` (503, retry), never a
  "not found".
- A file miss starts one *fill* per blob (single flight across the callers of this process):
  callers stream the bytes as they land, but the last byte is held back until the whole file
  is verified, so no client takes a truncated or wrong file for a whole one.
- ``allow``/``deny`` patterns (fnmatch on repo ids) say which repos the mirror may serve.
"""

from __future__ import annotations

import fnmatch
import os
import stat
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from ..cache.layout import RepoLayout
from ..cache.readiness import resolve_commit
from ..cache.records import read_record
from ..cache.usage import record_use
from ..errors import EndpointUnreachable, ModelCacheError, NotCached, TransientError
from ..hub.client import HubClient
from ..hub.download.assembly import Assembly
from ..progress import NullProgress
from ..protocol import FileEntry
from ..service.ensure import ensure_files
from ..service.remote import fetch_revision, record_revision
from ..settings import Settings

__all__ = ["Fill", "Mirror", "MirrorStats", "UpstreamUnavailable"]


FILL_WINDOW = 16
"""A fill's ranges are at most 1/(connections x FILL_WINDOW) of the file (``fill_chunk``)."""


def fill_chunk(size: int, settings: Settings) -> int:
    """The range size of a fill: small enough that the verified frontier — what callers are
    streamed — trails the bytes fetched by about 1/FILL_WINDOW of the file, not by the whole
    window of ``connections`` x ``chunk_size`` ranges in flight. With 16 connections and 8 MiB
    ranges a 128 MiB file is fetched all at once and its frontier jumps from ~0 to the end: every
    waiting caller then gets the whole file in one burst after the fill, instead of during it
    (16 curl clients of a cold mirror, 2 x 128 MiB at 80 MB/s: last done 6.4 s -> 4.6 s; the
    fill alone takes 3.4 s). At least 1 MiB (256 KiB ranges measured no better) unless
    ``chunk_size`` is smaller; never more than ``chunk_size``."""
    return min(settings.chunk_size, max(1 << 20, size // (max(1, settings.connections) * FILL_WINDOW)))


class UpstreamUnavailable(TransientError):
    """The upstream failed (for now) and the cache has nothing to fall back on."""


@dataclass
class MirrorStats:
    """Counters of the mirror's upstream traffic and fills; change them with ``add`` (thread-safe)."""

    upstream_bytes: int = 0
    """Bytes received from the upstream (bytes resumed from a partial on disk are not counted)."""
    upstream_api_calls: int = 0
    fills_started: int = 0
    fills_done: int = 0
    fills_failed: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, **kw: int) -> None:
        """Add to counters by name, e.g. ``add(fills_done=1)``; thread-safe."""
        with self.lock:
            for k, v in kw.items():
                setattr(self, k, getattr(self, k) + v)


class Fill:
    """One blob being fetched; readers follow ``available()``."""

    def __init__(self, entry: FileEntry) -> None:
        self.entry = entry
        self.asm: Assembly | None = None
        self.started = threading.Event()
        self.done = threading.Event()
        self.error: BaseException | None = None
        self.dropped = 0
        """Times the writer this fill streamed from was replaced (its lock taken over, or a new round)."""

    def switch(self, asm: Assembly | None) -> None:
        """The writer to stream from is now ``asm`` (None: another process fetches the blob, its
        bytes visible only once verified). Readers of the previous writer's inode see ``resets``
        change: what they may have streamed is no longer what this fill vouches for."""
        if self.asm is not None and asm is not self.asm:
            self.dropped += 1
        self.asm = asm
        self.started.set()

    def available(self) -> int:
        """Bytes from 0 that are written and hashed (the whole file once verified).

        Zero while another process fetches the blob: its bytes are not ours to vouch for."""
        if self.done.is_set() and self.error is None:
            return self.entry.size
        asm = self.asm
        return asm.hashed if asm is not None else 0

    @property
    def resets(self) -> tuple[int, int]:
        """Changes whenever bytes a reader may have streamed are thrown away (a bad digest, or the
        writer was replaced): a reader that sees it change must abort its response. A pair, not a
        sum — one reset then one lost writer must not read as "nothing happened"."""
        dropped = self.dropped  # (read first: ``switch`` bumps it before it replaces the writer)
        asm = self.asm
        return dropped, (asm.resets if asm is not None else 0)


@dataclass
class _Flight:
    done: threading.Event = field(default_factory=threading.Event)
    commit: str | None = None
    error: BaseException | None = None


class Mirror:
    """A read-through mirror of an upstream Hub into the cache: revision lookups, blob fills, allow/deny.

    Thread-safe. ``refresh`` and ``fill`` block: call them from worker threads, not the event loop.
    """

    def __init__(self, settings: Settings, client: HubClient, *, ttl: float = 60.0,
                 allow: Sequence[str] = (), deny: Sequence[str] = (),
                 clock: object = time.monotonic) -> None:
        self.settings = settings
        self.cache_dir = settings.cache_dir
        self.client = client
        self.ttl = ttl
        self.offline = settings.offline
        self.allow, self.deny = tuple(allow), tuple(deny)
        self.stats = MirrorStats()
        self._clock = clock
        self._revs: dict[tuple[str, str, str], tuple[str, float]] = {}
        self._flights: dict[tuple[str, str, str], _Flight] = {}
        self._fills: dict[tuple[str, str], Fill] = {}
        self._lock = threading.Lock()

    # -- policy ---------------------------------------------------------------------------------
    def permits(self, repo_id: str) -> bool:
        """Whether ``repo_id`` may be served: no ``deny`` pattern matches, and an ``allow`` one does if any are set."""
        if any(fnmatch.fnmatchcase(repo_id, p) for p in self.deny):
            return False
        return not self.allow or any(fnmatch.fnmatchcase(repo_id, p) for p in self.allow)

    # -- revisions (blocking: call from a worker thread) ------------------------------------------
    def refresh(self, layout: RepoLayout, revision: str) -> str | None:
        """Resolve ``revision`` upstream (remembered for ``ttl``) and make sure its record is here.

        Returns the commit, or None when offline or when the upstream failed but the cache can
        answer. Raises ``UpstreamUnavailable`` when it failed and the cache cannot; the upstream's
        "not found" / "gated" answers propagate as they are.
        """
        if self.offline:
            return None
        key = (layout.repo_type, layout.repo_id, revision)
        with self._lock:
            hit = self._revs.get(key)
        if hit is not None and hit[1] > self._clock() and self._on_disk(layout, revision, hit[0]):  # type: ignore[operator]
            return hit[0]
        with self._lock:
            flight = self._flights.get(key)
            leader = flight is None
            if flight is None:
                flight = self._flights[key] = _Flight()
        if not leader:
            flight.done.wait()
            if flight.error is not None:
                raise flight.error
            return flight.commit
        try:
            flight.commit = self._ask_upstream(layout, revision, key)
            return flight.commit
        except BaseException as exc:
            flight.error = exc
            raise
        finally:
            with self._lock:
                self._flights.pop(key, None)
            flight.done.set()

    def _ask_upstream(self, layout: RepoLayout, revision: str, key: tuple[str, str, str]) -> str | None:
        try:
            self.stats.add(upstream_api_calls=1)
            info, record = fetch_revision(self.client, layout, revision)
            record_revision(layout, info, record, [revision])
        except (EndpointUnreachable, TransientError) as exc:
            if resolve_commit(layout, revision) is not None:
                return None  # serve what the cache has
            raise UpstreamUnavailable(
                f"the upstream could not answer for {layout.repo_id}@{revision} and it is not cached here: "
                f"{exc.message}", "retry shortly", retry_after=getattr(exc, "retry_after", None) or 5.0,
            ) from None
        with self._lock:
            self._revs[key] = (info.commit, self._clock() + self.ttl)  # type: ignore[operator]
        return info.commit

    @staticmethod
    def _on_disk(layout: RepoLayout, revision: str, commit: str) -> bool:
        """Is what we remember still there (a ``gc``/``rm`` may have removed it meanwhile)?"""
        if not layout.tree_record(commit).is_file():
            return False
        return revision == commit or layout.read_ref(revision) == commit

    # -- files ----------------------------------------------------------------------------------
    def fill(self, layout: RepoLayout, commit: str, entry: FileEntry) -> Fill:
        """The fill for this blob: the running one, or a new one started now."""
        key = (str(layout.folder), entry.etag)
        with self._lock:
            current = self._fills.get(key)
            if current is not None and not (current.done.is_set() and current.error is not None):
                fill, new = current, False
            else:
                fill, new = Fill(entry), True
                self._fills[key] = fill
        if new:
            self.stats.add(fills_started=1)
            threading.Thread(target=self._run, args=(layout, commit, fill, key), daemon=True,
                             name=f"mc-fill-{entry.etag[:8]}").start()
        fill.started.wait(10)
        return fill

    def _run(self, layout: RepoLayout, commit: str, fill: Fill, key: tuple[str, str]) -> None:
        def on_start(_entry: FileEntry, asm: Assembly | None) -> None:
            fill.switch(asm)  # (None: our writer lost the blob's lock, or another process fetches it)

        try:
            record = read_record(layout.tree_record(commit), commit)
            if record is None or fill.entry.path not in record.files:
                raise NotCached(f"the record of {layout.repo_id}@{commit} is gone", "ask again")
            settings = self.settings.with_overrides(chunk_size=fill_chunk(fill.entry.size, self.settings))
            outcome = ensure_files(settings, self.client, layout, record, [fill.entry], NullProgress(),
                                   on_start=on_start)
            self.stats.add(upstream_bytes=outcome.bytes_fetched)
            record_use(layout, commit)
        except (ModelCacheError, OSError) as exc:
            fill.error = exc
            self.stats.add(fills_failed=1)
        except BaseException as exc:  # pragma: no cover - surface, never hang readers
            fill.error = exc
            self.stats.add(fills_failed=1)
        finally:
            self.stats.add(fills_done=1)
            fill.started.set()
            fill.done.set()
            with self._lock:
                if self._fills.get(key) is fill and fill.error is None:
                    del self._fills[key]

    def partial_fd(self, layout: RepoLayout, fill: Fill) -> int | None:
        """An fd on the bytes being filled (stays valid across the final rename); None if neither exists.

        Only this fill's own inode is trusted (another process may be filling the same blob into
        its own file): the writer's private name, checked to be that inode; else the blob, which
        is always verified bytes."""
        asm = fill.asm
        want = asm.inode if asm is not None else None
        candidates = [(asm.private, True)] if asm is not None else []
        candidates.append((layout.blob(fill.entry.etag), False))
        for path, must_match in candidates:
            try:
                fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
            except OSError:
                continue
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or (must_match and (st.st_dev, st.st_ino) != want):
                os.close(fd)
                continue
            return fd
        return None
