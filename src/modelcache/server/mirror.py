"""Read-through mirror: what the cache misses is fetched from an upstream Hub, once.

- Revision lookups go upstream and are remembered for ``ttl`` seconds (``main`` may move);
  the commit's file list is written as the completeness record, so the cache's own index
  serves the API answers. An unreachable upstream falls back to what is cached.
- A file miss starts one *fill* per blob (single flight across all callers): the transfer
  engine fetches it into the partial blob with its usual retries and verification. Callers
  stream the bytes as they land, but the last byte is held back until the whole file is
  verified: a failed or corrupt fill aborts the callers' connections, so no client ever takes
  a truncated or wrong file for a whole one. The next request resumes the partial.
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
from pathlib import Path

from ..cache.access import Access, write_access
from ..cache.layout import RepoLayout
from ..cache.publish import ensure_repo_dirs, install_blob_fd, link_file, publish_record
from ..protocol import FileEntry
from ..cache.records import TreeRecord, read_record
from ..cache.usage import record_use
from ..errors import EndpointUnreachable, ModelCacheError, TransientError
from ..hub.download.assembly import Assembly
from ..hub.client import HubClient
from ..hub.download.engine import Backoff, FileJob, TransferEngine

__all__ = ["Fill", "Mirror", "MirrorStats"]


@dataclass
class MirrorStats:
    upstream_bytes: int = 0
    fills_started: int = 0
    fills_done: int = 0
    fills_failed: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)


class Fill:
    """One blob being fetched from upstream; readers follow ``available()``."""

    def __init__(self, entry: FileEntry) -> None:
        self.entry = entry
        self.asm: Assembly | None = None
        self.started = threading.Event()
        self.done = threading.Event()
        self.error: BaseException | None = None

    def available(self) -> int:
        """Bytes from 0 that are written (a lower bound; the whole file once verified)."""
        if self.done.is_set() and self.error is None:
            return self.entry.size
        asm = self.asm
        return asm.hashed if asm is not None else 0

    @property
    def resets(self) -> int:
        return self.asm.resets if self.asm is not None else 0


class Mirror:
    def __init__(self, cache_dir: Path, client: HubClient, *, ttl: float = 60.0, offline: bool = False,
                 allow: Sequence[str] = (), deny: Sequence[str] = (), connections: int = 4,
                 chunk_size: int = 8 * 1024 * 1024, retries: int = 3) -> None:
        self.cache_dir = Path(cache_dir)
        self.client = client
        self.ttl = ttl
        self.offline = offline
        self.allow, self.deny = tuple(allow), tuple(deny)
        self.connections, self.chunk_size, self.retries = connections, chunk_size, retries
        self.stats = MirrorStats()
        self._revs: dict[tuple[str, str, str], tuple[str, float]] = {}
        self._fills: dict[tuple[str, str], Fill] = {}
        self._lock = threading.Lock()

    # -- policy ---------------------------------------------------------------------------------
    def permits(self, repo_id: str) -> bool:
        if any(fnmatch.fnmatchcase(repo_id, p) for p in self.deny):
            return False
        return not self.allow or any(fnmatch.fnmatchcase(repo_id, p) for p in self.allow)

    # -- revisions (blocking: call from a worker thread) ------------------------------------------
    def refresh(self, layout: RepoLayout, revision: str) -> str | None:
        """Resolve ``revision`` upstream (cached for ``ttl``) and make sure its record is here.

        Returns the commit, or None when offline / the upstream is unreachable (serve the cache).
        Upstream "not found" answers propagate as errors.
        """
        if self.offline:
            return None
        key = (layout.repo_type, layout.repo_id, revision)
        now = time.monotonic()
        with self._lock:
            hit = self._revs.get(key)
        if hit is not None and hit[1] > now:
            return hit[0]
        try:
            info = self.client.revision_info(layout.repo_type, layout.repo_id, revision)
            commit = info.commit
            if read_record(layout.tree_record(commit), commit) is None:
                record = TreeRecord.of(commit, self.client.list_files(layout.repo_type, layout.repo_id, commit))
                ensure_repo_dirs(layout)
                publish_record(layout, record)
            else:
                ensure_repo_dirs(layout)
            if revision != commit:
                layout.write_ref(revision, commit)
            write_access(layout, Access(gated=info.gated, private=info.private))
        except (EndpointUnreachable, TransientError):
            return None
        with self._lock:
            self._revs[key] = (commit, now + self.ttl)
        return commit

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
        if not new:
            fill.started.wait(10)
            return fill
        with self.stats.lock:
            self.stats.fills_started += 1
        threading.Thread(target=self._run, args=(layout, commit, fill, key), daemon=True,
                         name=f"mc-fill-{entry.etag[:8]}").start()
        fill.started.wait(10)
        return fill

    def _run(self, layout: RepoLayout, commit: str, fill: Fill, key: tuple[str, str]) -> None:
        entry = fill.entry

        def on_start(asm: Assembly) -> None:
            fill.asm = asm
            fill.started.set()

        def install(e: FileEntry, fd: int, private: Path) -> Path | None:  # the verified inode itself
            return install_blob_fd(layout, e.etag, fd, private)

        def publish(e: FileEntry) -> None:
            link_file(layout, commit, e)
            record_use(layout, commit)

        def count(_path: str, n: int) -> None:
            with self.stats.lock:
                self.stats.upstream_bytes += n

        try:
            ensure_repo_dirs(layout)
            if _size(layout.blob(entry.etag)) == entry.size:  # another fill finished it meanwhile
                link_file(layout, commit, entry)
            else:
                job = FileJob(entry, self.client.file_url(layout.repo_type, layout.repo_id, commit, entry.path),
                              layout.partial(entry.etag), publish, on_start=on_start, install=install)
                TransferEngine(self.client, connections=self.connections, chunk_size=self.chunk_size,
                               backoff=Backoff(base=0.2, cap=5.0, attempts=self.retries), on_bytes=count,
                               repo_id=layout.repo_id).run([job])
        except (ModelCacheError, OSError) as exc:
            fill.error = exc
            with self.stats.lock:
                self.stats.fills_failed += 1
        except BaseException as exc:  # pragma: no cover - surface, never hang readers
            fill.error = exc
        finally:
            with self.stats.lock:
                self.stats.fills_done += 1
            fill.started.set()
            fill.done.set()
            with self._lock:
                if self._fills.get(key) is fill and fill.error is None:
                    del self._fills[key]

    def partial_fd(self, layout: RepoLayout, entry: FileEntry) -> int | None:
        """An fd on the bytes being filled (stays valid across the final rename); None if neither exists.

        The partial's name is only trusted when it holds *this* fill's inode (another process may
        be filling the same blob into its own inode); a blob is always verified bytes."""
        with self._lock:
            fill = self._fills.get((str(layout.folder), entry.etag))
        want = fill.asm.inode if fill is not None and fill.asm is not None else None
        for path, must_match in ((layout.partial(entry.etag), True), (layout.blob(entry.etag), False)):
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


def _size(p: Path) -> int | None:
    try:
        return p.stat().st_size
    except OSError:
        return None
