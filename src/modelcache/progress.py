"""Progress reporting for long downloads.

``Progress`` is the interface the service calls (from several threads). ``LineProgress``
writes periodic one-line JSON records (for Job logs) or a single rewritten status line on a
TTY. Records carry repo ids, paths and byte counts only — never a URL with credentials nor a
token.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from typing import IO, Any

from ._format import human_size

__all__ = ["LineProgress", "NullProgress", "Progress", "RichProgress", "for_stream"]


class Progress:
    """What a download reports as it goes; every method is a no-op here.

    Called from several download threads at once: implementations must be thread-safe.
    """

    def start(self, repo_id: str, commit: str, plan: Any) -> None:
        """A download of ``repo_id`` at ``commit`` begins; ``plan`` is its download plan (files, bytes to fetch)."""
        ...

    def advance(self, path: str, nbytes: int) -> None:
        """``nbytes`` more bytes of ``path`` arrived."""
        ...

    def file_done(self, path: str) -> None:
        """``path`` is in the snapshot (fetched, or linked to a blob already cached)."""
        ...

    def waiting(self, reason: str, seconds: float) -> None:
        """The download waits ``seconds`` before retrying (rate limited, endpoint failing…)."""

    def finish(self, summary: dict[str, object]) -> None:
        """The download ended; ``summary`` is its result record."""
        ...


class NullProgress(Progress):
    """Progress that reports nothing."""

    pass


class LineProgress(Progress):
    """Thread-safe byte counter that prints at most every ``interval`` seconds."""

    def __init__(self, stream: IO[str] | None = None, *, json_lines: bool | None = None, interval: float = 2.0,
                 clock: Any = time.monotonic) -> None:
        self.stream = stream or sys.stderr
        self.json_lines = (not self.stream.isatty()) if json_lines is None else json_lines
        self.interval = interval
        self.clock = clock
        self._lock = threading.Lock()
        self._done_bytes = 0
        self._total = 0
        self._files_total = 0
        self._files_done = 0
        self._t0 = clock()
        self._last = 0.0
        self._repo = ""

    def start(self, repo_id: str, commit: str, plan: Any) -> None:
        """Reset the counters from ``plan`` and write a ``start`` record at once."""
        with self._lock:
            self._repo = repo_id
            self._total = plan.bytes_to_fetch
            self._files_total = len(plan.files)
            self._files_done = sum(1 for f in plan.files if f.action == "present")
            self._t0 = self.clock()
        self._emit("start", force=True, commit=commit, bytes_to_fetch=plan.bytes_to_fetch,
                   files=len(plan.files), files_to_fetch=len(plan.to_fetch))

    def advance(self, path: str, nbytes: int) -> None:
        """Count ``nbytes`` more bytes; writes a record only if ``interval`` seconds have passed."""
        with self._lock:
            self._done_bytes += nbytes
        self._emit("progress")

    def file_done(self, path: str) -> None:
        """Count one more finished file; writes a record only if ``interval`` seconds have passed."""
        with self._lock:
            self._files_done += 1
        self._emit("progress")

    def waiting(self, reason: str, seconds: float) -> None:
        """Report a wait before a retry (a ``waiting`` record, or a line on a TTY); at most one per second."""
        what = "rate limited" if "429" in reason else "endpoint failing"
        now = self.clock()
        with self._lock:  # many connections may wait at once: one line per second is enough
            if now - getattr(self, "_waited_at", -1e9) < 1.0:
                return
            self._waited_at = now
        if self.json_lines:
            self._emit("waiting", force=True, reason=f"{what}: {reason}", retry_in_s=round(seconds, 1))
        else:
            with self._lock:
                self.stream.write(f"\rwaiting: {what}, retrying in {seconds:.0f}s ({reason})\n")
                self.stream.flush()

    def finish(self, summary: dict[str, object]) -> None:
        """Write the final ``done`` record (and end the status line on a TTY)."""
        self._emit("done", force=True)
        if not self.json_lines:
            self.stream.write("\n")
            self.stream.flush()

    def _emit(self, event: str, force: bool = False, **extra: object) -> None:
        now = self.clock()
        with self._lock:
            if not force and now - self._last < self.interval:
                return
            self._last = now
            elapsed = max(now - self._t0, 1e-6)
            rate = self._done_bytes / elapsed
            remaining = max(self._total - self._done_bytes, 0)
            eta = remaining / rate if rate > 0 else None
            rec = {
                "event": event,
                "repo_id": self._repo,
                "bytes_done": self._done_bytes,
                "bytes_total": self._total,
                "files_done": self._files_done,
                "files_total": self._files_total,
                "rate_bps": int(rate),
                "eta_s": round(eta, 1) if eta is not None else None,
                **extra,
            }
        if self.json_lines:
            self.stream.write(json.dumps(rec) + "\n")
        else:
            pct = 100.0 * rec["bytes_done"] / rec["bytes_total"] if rec["bytes_total"] else 100.0
            eta_s = f"{rec['eta_s']:.0f}s" if rec["eta_s"] is not None else "—"
            self.stream.write(
                f"\r{self._repo}: {pct:5.1f}% {human_size(rec['bytes_done'])}/{human_size(rec['bytes_total'])} "
                f"files {rec['files_done']}/{rec['files_total']} {human_size(rate)}/s ETA {eta_s}   "
            )
        self.stream.flush()


class RichProgress(Progress):
    """On a terminal: a total bar plus one bar per file in flight (throughput, ETA)."""

    MAX_FILE_BARS = 8

    def __init__(self, console: Any = None) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )
        from rich.progress import Progress as _RichProgress

        self._bars = _RichProgress(
            TextColumn("{task.description}", justify="left"),
            BarColumn(bar_width=30),
            DownloadColumn(binary_units=True),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=console or Console(stderr=True),
            transient=False,
        )
        self._lock = threading.Lock()
        self._total: Any = None
        self._files: dict[str, Any] = {}
        self._sizes: dict[str, int] = {}

    def start(self, repo_id: str, commit: str, plan: Any) -> None:
        """Start the bars: a total bar for ``plan``'s bytes to fetch."""
        self._sizes = {f.entry.path: f.entry.size for f in plan.to_fetch}
        self._bars.start()
        self._total = self._bars.add_task(f"{repo_id}@{commit[:8]}", total=plan.bytes_to_fetch or 1)

    def advance(self, path: str, nbytes: int) -> None:
        """Advance the total bar and the file's bar (added on first use, at most ``MAX_FILE_BARS``)."""
        with self._lock:
            task = self._files.get(path)
            if task is None and len(self._files) < self.MAX_FILE_BARS and path in self._sizes:
                name = path if len(path) <= 40 else "…" + path[-39:]
                task = self._files[path] = self._bars.add_task(f"  {name}", total=self._sizes[path])
        if task is not None:
            self._bars.update(task, advance=nbytes)
        self._bars.update(self._total, advance=nbytes)

    def waiting(self, reason: str, seconds: float) -> None:
        """Print a line saying why and how long the download waits before retrying."""
        what = "rate limited" if "429" in reason else "endpoint failing"
        self._bars.console.print(f"waiting: {what}, retrying in {seconds:.0f}s ({reason})")

    def file_done(self, path: str) -> None:
        """Remove the finished file's bar."""
        with self._lock:
            task = self._files.pop(path, None)
        if task is not None:
            self._bars.remove_task(task)

    def finish(self, summary: dict[str, object]) -> None:
        """Stop the bars (the final state stays on the terminal)."""
        self._bars.stop()


def for_stream(stream: IO[str] | None = None) -> Progress:
    """Rich bars on a terminal, periodic JSON lines otherwise (Job logs)."""
    stream = stream or sys.stderr
    if stream.isatty():
        return RichProgress()
    return LineProgress(stream, json_lines=True)
