"""The transfer engine: many keep-alive connections, ranges across and within files.

Every file is cut into chunks (``chunk_size``, default 8 MiB); one queue feeds ``connections``
worker threads, files in order and chunks in order, so a big shard is fetched by several
connections at once while small files fill the gaps. Faults are per chunk: a transient one
(connection drop, stall, 5xx, 429, a wrong ``Content-Range``) is retried from the byte where it
stopped, with exponential backoff and jitter (``Retry-After`` honoured); a permanent one
(401/403/404, a digest that is wrong twice) stops the whole transfer.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import httpx

from ...hashing import BlobHasher
from ...protocol import FileEntry
from ...errors import ModelCacheError, TransientError
from .assembly import Assembly, LockLost
from .fetch import corrupt_twice, drain_error, get_whole, open_stream
from .jobs import EngineStats, FileJob
from ...settings import DEFAULTS
from .ranges import content_range as _content_range, header_int as _int
from ..client import HubClient, error_for_response
from ..rawhttp import RawResponse, iter_body
from ..smallgets import Failed, Get, SmallGets
from ..retry import Backoff, WaitCallback
from .writeback import Writeback

__all__ = ["Backoff", "EngineStats", "FileJob", "TransferEngine"]  # re-exports: Backoff (hub/retry.py), jobs.py


@dataclass(frozen=True)
class _Chunk:
    asm: Assembly
    job: FileJob
    start: int
    end: int


@dataclass(frozen=True)
class _Small:
    job: FileJob
    bad: int = 0  # fetches of it so far whose content did not match
    answered: TransientError | None = None  # the small-file loop was answered this (429/5xx): back off first


_STOP = object()

SMALL_FANOUT = 4
"""Small files are latency-bound (one short request each): up to this many times ``connections``
fetch them at once (one thread drives them, ``smallgets``; the threaded path uses 2x); ranges of
big files never use more than ``connections``. Measured on 500 x 64 KiB at 20 ms latency, the
loop alone: 16 connections 0.78 s, 32 0.44 s, 64 0.22 s, 128 0.14 s; a whole download, where
writing the files then takes over, 64 against 32: 0.97x the wall."""

SMALL_BATCH = 16
"""Most verified small files written in one batch (one pass of syncs; see ``install_small``)."""

SMALL_FILE_MAX = 16 * 1024 * 1024
"""The largest file the in-memory path (``FileJob.install_bytes``) takes; ``Settings.small_file_bytes``
chooses the threshold under it. Each connection holds one such file as it fetches it, and at most
``connections`` verified ones wait for (or are being written by) the finishers: a connection that
would exceed that waits, so a slow disk (an NFS fsync) holds memory at (1 + SMALL_FANOUT) x
connections files, not the whole repo."""

FINISHERS = 4
"""Threads that sync, install and publish verified files, so a connection goes on to its next
request at once instead of waiting for the disk (with small files the two would take turns)."""


FALLBACK_WORKERS = 4
"""Worker threads kept for what the small-file loop hands back (an error status, a dropped connection)."""

class TransferEngine:
    """Downloads files over ``connections`` keep-alive connections, in chunks of ``chunk_size`` bytes.

    Use a new engine for each ``run`` (its queue, abort flag and stats are not reset).
    """

    def __init__(
        self,
        client: HubClient,
        *,
        connections: int = DEFAULTS["connections"],
        chunk_size: int = DEFAULTS["chunk_size"],
        backoff: Backoff = Backoff(),
        checkpoint_interval: float = 1.0,
        checkpoint_bytes: int = DEFAULTS["checkpoint_bytes"],
        on_bytes: Callable[[str, int], None] | None = None,
        repo_id: str = "",
        sleep: Callable[[float], None] = time.sleep,
        on_wait: WaitCallback | None = None,
        install_small: Callable[[list[tuple[FileEntry, bytes]]], object] | None = None,
        multiplex: bool = True,
    ) -> None:
        self.client = client
        self.multiplex = multiplex
        """Small files over non-blocking connections from one thread (``smallgets``), when the raw
        client is on for their URL; False: one blocking request per worker thread."""
        self.install_small = install_small
        """Writes several verified small files at once (one pass of syncs for the batch); without
        it each goes through its job's ``install_bytes``."""
        self._ready: list[tuple[FileJob, bytes]] = []  # verified small files for the next batch
        self._ready_lock = threading.Lock()
        self.connections = max(1, connections)
        self.chunk_size = max(64 * 1024, chunk_size)
        self.backoff = backoff
        self.checkpoint_interval = checkpoint_interval
        self.checkpoint_bytes = checkpoint_bytes
        self.on_bytes = on_bytes or (lambda path, n: None)
        self.repo_id = repo_id
        self.sleep = sleep
        self.on_wait = on_wait
        self.stats = EngineStats()
        self.lost: list[FileJob] = []
        """Files whose lock another process took over meanwhile: that process finishes them."""
        self._queue: queue.Queue[object] = queue.Queue()
        self._abort = threading.Event()
        self._error: BaseException | None = None
        self._remaining = 0
        self._cv = threading.Condition()
        self._local = threading.local()  # one read buffer per connection thread
        self._backlog = threading.BoundedSemaphore(self.connections)  # verified small files not yet written

    # -- public -----------------------------------------------------------------------------------
    def run(self, jobs: list[FileJob]) -> EngineStats:
        """Download every job (resuming partials), verify each file and hand it to its ``on_verified``/``install``.

        Blocks until all are done. Raises the first error a worker hit (the other workers stop);
        files lost to another process are in ``lost``, not an error.
        """
        assemblies: list[Assembly] = []
        self._finisher = ThreadPoolExecutor(max_workers=min(FINISHERS, self.connections),
                                            thread_name_prefix="mc-finish")
        small = 0
        looped: list[FileJob] = []  # small files fetched by one thread over many connections
        loop_thread: threading.Thread | None = None
        try:
            for job in jobs:
                if job.install_bytes is not None:
                    if job.entry.size > SMALL_FILE_MAX:
                        raise ValueError(f"{job.entry.path}: too large for the in-memory path")
                    self._add_remaining()
                    if self.multiplex and self.client.raw_pool_for(job.url) is not None:
                        looped.append(job)
                    else:
                        self._queue.put(_Small(job))
                        small += 1
                    continue
                asm = Assembly(job.entry, job.partial, fence=job.fence, folder=job.folder)  # type: ignore[arg-type]
                asm.checkpoint_bytes, asm.checkpoint_interval = self.checkpoint_bytes, self.checkpoint_interval
                assemblies.append(asm)
                if job.on_start is not None:
                    job.on_start(asm)
                self.stats.add(bytes_resumed=asm.resumed)
                if asm.resumed:
                    self.on_bytes(job.entry.path, asm.resumed)
                chunks = asm.missing_chunks(self.chunk_size)
                self._add_remaining()
                if not chunks:
                    self._complete_if_whole(asm, job)
                    continue
                for a, b in chunks:
                    self._queue.put(_Chunk(asm, job, a, b))
            if self._remaining and not self._done():
                n = min(self.connections, self._queue.qsize() or 1)
                if looped:  # (the loop hands its faults to these workers: errors, retries, backoff)
                    n = max(n, min(self.connections, FALLBACK_WORKERS))
                    loop_thread = threading.Thread(target=self._loop_small, args=(looped,), name="mc-small",
                                                   daemon=True)
                    loop_thread.start()
                extra = min(self.connections, max(0, small - n))  # (threads: 2x, see SMALL_FANOUT)
                workers = [
                    threading.Thread(target=self._worker, args=(i >= n,), name=f"mc-conn-{i}", daemon=True)
                    for i in range(n + extra)
                ]
                for w in workers:
                    w.start()
                with self._cv:
                    while not self._done():
                        self._cv.wait(0.5)
                self._abort.set()
                for _ in workers:
                    self._queue.put(_STOP)
                for w in workers:
                    w.join()
                if loop_thread is not None:
                    loop_thread.join()
            self._finisher.shutdown(wait=True)  # (a no-op when done: every file was published)
            if self._error is not None:
                raise self._error
            return self.stats
        finally:
            self._finisher.shutdown(wait=True)  # no file is closed under a publishing thread
            for asm in assemblies:
                asm.close()

    # -- bookkeeping ----------------------------------------------------------------------------------
    def _done(self) -> bool:
        return self._remaining <= 0 or self._error is not None

    def _add_remaining(self) -> None:
        # under the lock the finishers decrement it with: a resumed, complete file is published
        # by a finisher while this thread still counts the next jobs in
        with self._cv:
            self._remaining += 1

    def _fail(self, exc: BaseException) -> None:
        with self._cv:
            if self._error is None:
                self._error = exc
            self._abort.set()
            self._cv.notify_all()

    def _complete_if_whole(self, asm: Assembly, job: FileJob) -> None:
        """Called whenever a chunk lands: if the frontier reached the end, verify and publish."""
        with asm.lock:
            if asm.finalizing or not asm.complete or asm.fd < 0:
                return
            asm.finalizing = True
            ok = asm.hasher.hexdigest() == asm.entry.etag
        if not ok:
            asm.integrity_failures += 1
            self.stats.add(restarts=1)
            if asm.integrity_failures >= 2:
                raise corrupt_twice(asm.entry, self.repo_id)
            asm.reset()
            for a, b in asm.missing_chunks(self.chunk_size):
                self._queue.put(_Chunk(asm, job, a, b))
            return
        self._finish(self._publish, asm, job)

    def _finish(self, step: Callable[..., None], *args: object) -> None:
        """Hand ``step(*args)`` to a finisher thread. Whatever it raises is surfaced by ``run()``:
        an exception left in the pool's future would be seen by no one, and ``run()`` would wait
        for that file forever."""
        def guarded() -> None:
            try:
                step(*args)
            except BaseException as exc:  # noqa: BLE001
                self._fail(exc)

        self._finisher.submit(guarded)

    def _publish(self, asm: Assembly, job: FileJob) -> None:
        """(A finisher thread) make a verified file durable, install it and hand it on."""
        try:
            asm.check_fence()
            if job.install is not None:
                asm.sync()
                if job.install(job.entry, asm.fd, asm.private) is None:
                    self._lose(asm, job)  # our private name was taken: we were presumed dead meanwhile
                    return
                asm.finish_installed()
            else:
                asm.finish()
            job.on_verified(job.entry)
        except LockLost:
            self._lose(asm, job)
            return
        except BaseException as exc:  # noqa: BLE001 - surfaced by run(), never lost in the pool
            self._fail(exc)
            return
        with self._cv:
            self._remaining -= 1
            self._cv.notify_all()

    def _lose(self, asm: Assembly, job: FileJob) -> None:
        """Another process took this blob's lock over: stop fetching it (it finishes it)."""
        with asm.lock:
            if asm.dropped:
                return
            asm.lost = asm.dropped = True
            self.lost.append(job)
        try:
            asm.abandon()
        except BaseException as exc:  # noqa: BLE001 - the disk refuses (read-only…): surfaced by run()
            self._fail(exc)
        with self._cv:
            self._remaining -= 1
            self._cv.notify_all()

    # -- workers --------------------------------------------------------------------------------------
    def _worker(self, small_only: bool = False) -> None:
        while not self._abort.is_set():
            item = self._queue.get()
            if item is _STOP:
                return
            if small_only and not isinstance(item, _Small):
                self._queue.put(item)  # ranges of big files: for the `connections` regular workers
                return
            if isinstance(item, _Small):
                try:
                    if item.answered is not None:
                        self._back_off(item.answered, 1)
                    self._fetch_small(item.job, item.bad, 1 if item.answered is not None else 0)
                except BaseException as exc:  # noqa: BLE001 - ModelCacheError, OSError or a bug: surface it
                    self._fail(exc)
                continue
            chunk: _Chunk = item  # type: ignore[assignment]
            try:
                if chunk.asm.lost:
                    continue
                self._fetch_chunk(chunk)
                chunk.asm.advance()
                self._complete_if_whole(chunk.asm, chunk.job)
            except LockLost:
                self._lose(chunk.asm, chunk.job)
            except ModelCacheError as exc:
                self._fail(exc)
            except OSError as exc:
                self._fail(exc)
            except BaseException as exc:  # pragma: no cover - a bug: surface it, don't hang
                self._fail(exc)

    def _fetch_chunk(self, c: _Chunk) -> None:
        asm, me = c.asm, threading.get_ident()
        pos, failures = c.start, 0
        while not self._abort.is_set():
            # a server that ignores Range: one worker (the owner) streams the whole file
            target = asm.size if asm.no_ranges and asm.stream_owner == me else c.end
            if pos >= target or asm.fd < 0 or asm.covered(pos, target):
                return
            asm.check_fence()  # a writer whose lock was taken over stops before its next request
            if asm.no_ranges and asm.stream_owner not in (None, me):
                return
            before = pos
            inline = asm.take_inline(pos)
            try:
                pos = self._stream(c, pos, inline)
            except TransientError as exc:
                pos = asm.done_until(pos)  # what the failed stream recorded before it broke
                failures = 1 if pos > before else failures + 1
                self._back_off(exc, failures)
            finally:
                if inline:
                    asm.release()

    def _back_off(self, exc: TransientError, failures: int) -> None:
        """After the ``failures``-th transient fault in a row: re-raise it past the retry budget,
        else wait (backoff with jitter, ``Retry-After`` honoured), saying so."""
        self.stats.add(retries=1)
        if failures > self.backoff.attempts:
            raise exc
        wait = self.backoff.delay(failures - 1, exc.retry_after)
        if self.on_wait is not None:
            self.on_wait(exc.message, wait)
        self.sleep(wait)

    def _stream(self, c: _Chunk, pos: int, inline: bool) -> int:
        """One request for bytes ``pos..c.end``; returns the position reached (== c.end on success)."""
        asm, entry = c.asm, c.asm.entry
        whole = pos == 0 and c.end == entry.size
        headers = {"Accept-Encoding": "identity"}
        if not whole and not asm.no_ranges:
            headers["Range"] = f"bytes={pos}-{c.end - 1}"
        end = c.end
        recorded = first = pos
        wb: Writeback | None = None
        try:
            resp = open_stream(self.client, c.job.url, headers, entry)
            try:
                if resp.status_code == 200 and "Range" in headers:
                    with asm.lock:
                        if asm.stream_owner is not None and asm.stream_owner != threading.get_ident():
                            return c.end
                        asm.no_ranges = True
                        asm.stream_owner = threading.get_ident()
                    if inline:
                        asm.release()
                        inline = False
                    pos = recorded = first = 0
                    end = entry.size
                    self.stats.add(restarts=1)
                elif resp.status_code == 206:
                    got = _content_range(resp.headers.get("Content-Range"), entry.size)
                    # the start must match; a longer range than asked is read up to ``end`` only
                    if "Range" not in headers or got is None or got[0] != pos or got[1] < end:
                        raise TransientError(
                            f"{entry.path}: the server answered a range other than the one asked "
                            f"(asked {pos}-{end - 1}, got {resp.headers.get('Content-Range')!r})",
                            "retrying",
                        )
                elif resp.status_code != 200:
                    drain_error(resp)
                    raise error_for_response(resp, entry.path, self.repo_id, repo_known=True)
                if asm.no_ranges and pos > 0:
                    # no ranges: the whole body again from byte 0; its bytes are not where an
                    # inline hash would expect them, so the readback hashes them instead
                    asm.release()
                    inline = False
                    pos = recorded = first = 0
                    end = entry.size
                body_len = _int(resp.headers.get("content-length"))
                got = 0
                wb = Writeback(asm.fd, pos)
                for data in self._body(resp):
                    if self._abort.is_set():
                        break
                    n = len(data)
                    got += n
                    if pos + n > end:
                        if whole or end == entry.size:
                            raise TransientError(
                                f"{entry.path}: the server sent more bytes than its size {entry.size}", "retrying"
                            )
                        data, n = data[: end - pos], end - pos
                    asm.write(pos, data)
                    if inline:
                        asm.hash_inline(data)
                    pos += n
                    wb.wrote(pos)
                    self.stats.add(bytes_fetched=n)
                    self.on_bytes(entry.path, n)
                    asm.record((recorded, pos))  # in memory now; to disk when due (per file)
                    recorded = pos
                    if pos >= end and (body_len is None or got < body_len):
                        break  # more body than we need: drop it (and the connection)
                # (a body read to its end lets httpx put the connection back in its pool)
            finally:
                resp.close()
                if wb is not None:
                    wb.flush(pos)  # what this stream wrote, cut or not, starts going to disk
        except (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError) as exc:
            asm.record((recorded, pos), persist=True)
            raise TransientError(
                f"{entry.path}: connection lost at byte {pos} ({type(exc).__name__})", "retrying"
            ) from None
        # a whole file that arrived in one stream is verified next: no state file to write for it
        asm.record((recorded, pos), persist=not (first == 0 and pos == entry.size))
        if pos < end and not self._abort.is_set():
            raise TransientError(f"{entry.path}: body ended at byte {pos} of {end}", "retrying")
        return max(pos, c.end) if end == entry.size and pos >= end else pos

    # -- small files: in memory ---------------------------------------------------------------------
    def _fetch_small(self, job: FileJob, bad: int = 0, failures: int = 0) -> None:
        """Fetch a small file whole (retrying transient faults), verify it in memory, then hand it to
        a finisher to be written as its blob."""
        while not self._abort.is_set():
            try:
                data = self._get_small(job)
            except TransientError as exc:
                failures += 1
                self._back_off(exc, failures)
                continue
            if data is None:
                return  # aborted meanwhile
            if not self._matches(job, data, bad):
                bad += 1
                continue
            self._hand_over(job, data)
            return

    def _matches(self, job: FileJob, data: bytes | bytearray, bad: int) -> bool:
        """Whether ``data`` is the file's content; the second mismatch in a row is an error."""
        entry = job.entry
        hasher = BlobHasher(entry.size, entry.is_lfs)
        hasher.update(data)
        if hasher.hexdigest() == entry.etag:
            return True
        self.stats.add(restarts=1)
        if bad + 1 >= 2:
            raise corrupt_twice(entry, self.repo_id)
        return False

    def _hand_over(self, job: FileJob, data: bytes | bytearray) -> None:
        """Give verified bytes to the finishers (waiting while ``connections`` files already wait)."""
        while not self._backlog.acquire(timeout=0.1):  # the finishers are behind: wait for one
            if self._abort.is_set():
                return
        try:
            if self.install_small is None:
                self._finish(self._publish_small, job, data)
            else:
                with self._ready_lock:
                    self._ready.append((job, data))
                self._finish(self._publish_small_batch)  # (takes this file, or finds it taken)
        except BaseException:
            self._backlog.release()
            raise

    def _loop_small(self, jobs: list[FileJob]) -> None:
        """(One thread) fetch small files over ``connections x SMALL_FANOUT`` connections at once
        (``smallgets``); whatever it cannot take (an error status, a drop) goes to the workers."""
        pool = self.client.raw_pool_for(jobs[0].url)
        assert pool is not None

        def headers(url: str) -> dict[str, str] | None:
            return None if self.client.raw_pool_for(url) is None else self.client.auth_headers(url)

        def fetched(get: Get, body: bytearray) -> None:
            job: FileJob = get.tag  # type: ignore[assignment]
            self.stats.add(bytes_fetched=len(body))
            self.on_bytes(job.entry.path, len(body))
            if self._matches(job, body, 0):
                self._hand_over(job, body)
            else:
                self._queue.put(_Small(job, bad=1))

        def fell_back(get: Get, failed: Failed) -> None:
            job: FileJob = get.tag  # type: ignore[assignment]
            if not failed.status:  # a drop, a timeout, a wrong length: the workers ask again
                self._queue.put(_Small(job))
                return
            err = error_for_response(httpx.Response(failed.status, headers=failed.headers), job.entry.path,
                                     self.repo_id, repo_known=True)
            if not isinstance(err, TransientError):
                raise err  # a "no" (401, 403, 404…) is not asked twice
            self._queue.put(_Small(job, answered=err))

        try:
            SmallGets(width=self.connections * SMALL_FANOUT, timeout=pool.timeout, headers=headers,
                      tls=lambda: pool.tls).run(
                [Get(job.url, job.entry.size, job) for job in jobs], done=fetched, fallback=fell_back,
                stop=self._abort.is_set)
        except BaseException as exc:  # noqa: BLE001 - surfaced by run()
            self._fail(exc)

    def _get_small(self, job: FileJob) -> bytes | None:
        """One GET of the whole small file: its bytes (exactly ``entry.size``), None when aborted."""
        data = get_whole(self.client, job.url, job.entry, self.repo_id, self._body, self._abort.is_set)
        if data is not None:
            self.stats.add(bytes_fetched=len(data))
            self.on_bytes(job.entry.path, len(data))  # (progress moves once the whole file is here: a retry starts over)
        return data

    def _publish_small(self, job: FileJob, data: bytes) -> None:
        """(A finisher thread) write the verified bytes as the blob and hand the file on."""
        try:
            assert job.install_bytes is not None
            job.install_bytes(job.entry, data)
            job.on_verified(job.entry)
        except BaseException as exc:  # noqa: BLE001 - surfaced by run()
            self._fail(exc)
            return
        finally:
            self._backlog.release()
        with self._cv:
            self._remaining -= 1
            self._cv.notify_all()

    def _publish_small_batch(self) -> None:
        """(A finisher thread) write every verified small file waiting (up to ``SMALL_BATCH``) in
        one batch, then hand each on. One such call is made per file: each file is taken by the
        call made for it or by an earlier one."""
        with self._ready_lock:
            batch, self._ready = self._ready[:SMALL_BATCH], self._ready[SMALL_BATCH:]
        if not batch:
            return
        try:
            assert self.install_small is not None
            self.install_small([(job.entry, data) for job, data in batch])
            for job, _data in batch:
                job.on_verified(job.entry)
        except BaseException as exc:  # noqa: BLE001 - surfaced by run()
            self._fail(exc)
            return
        finally:
            for _ in batch:
                self._backlog.release()
        with self._cv:
            self._remaining -= len(batch)
            self._cv.notify_all()

    def _body(self, resp: httpx.Response | RawResponse) -> Iterator[bytes | memoryview]:
        if isinstance(resp, RawResponse):
            buf = getattr(self._local, "buf", None)
            if buf is None:
                buf = self._local.buf = memoryview(bytearray(1 << 20))
            return iter_body(resp, buf)
        return resp.iter_raw()  # no re-chunking: a buffer would be lost on a drop
