"""Prometheus metrics for ``serve`` (``/metrics``), on a registry of the app's own.

Counted as requests go: bytes served, cache hits and misses, bytes fetched upstream (mirror),
errors by kind, requests by endpoint. Read at scrape time: downloads in progress on the
volume (live activity markers of any process), cache size and budget (recomputed at most
every ``size_ttl`` seconds: walking a big cache is not free), bytes freed by ``gc`` (which
``gc`` records in the cache root).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ..cache.activity import in_progress
from ..cache.gc import read_gc_freed
from ..cache.layout import repo_layouts
from ..cache.quota import cache_usage

__all__ = ["Metrics", "CONTENT_TYPE", "request_log_line"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class _ScrapeTime(Collector):
    def __init__(self, cache_dir: Path, mirror_stats: object | None, size_ttl: float) -> None:
        self.cache_dir = cache_dir
        self.mirror_stats = mirror_stats
        self.size_ttl = size_ttl
        self._size: tuple[float, int, int | None] | None = None
        self._lock = threading.Lock()

    def _usage(self) -> tuple[int, int | None]:
        now = time.monotonic()
        with self._lock:
            if self._size is None or now - self._size[0] > self.size_ttl:
                u = cache_usage(self.cache_dir)
                self._size = (now, u.used, u.budget)
            return self._size[1], self._size[2]

    def _in_progress(self) -> int:
        n = 0
        if not self.cache_dir.is_dir():
            return 0
        for layout in repo_layouts(self.cache_dir):
            n += sum(1 for c in layout.commits() if in_progress(layout, c))
        return n

    def collect(self) -> Iterator[Metric]:
        used, budget = self._usage()
        yield GaugeMetricFamily("modelcache_cache_size_bytes", "Bytes of blobs and partial downloads in the cache.",
                                value=used)
        yield GaugeMetricFamily("modelcache_cache_budget_bytes", "The cache root's size budget (0: none).",
                                value=budget or 0)
        fills = 0
        stats = self.mirror_stats
        if stats is not None:
            fills = max(0, getattr(stats, "fills_started", 0) - getattr(stats, "fills_done", 0))
        yield GaugeMetricFamily("modelcache_downloads_in_progress",
                                "Revisions being downloaded into this cache by any process, plus mirror fills.",
                                value=self._in_progress() + fills)
        freed = read_gc_freed(self.cache_dir)  # junk there is warned about, never a traceback
        g = GaugeMetricFamily("modelcache_gc_freed_bytes", "Bytes freed by `modelcache gc` in this cache, all time.")
        g.add_metric([], freed)
        yield g
        if stats is not None:
            yield GaugeMetricFamily("modelcache_upstream_bytes", "Bytes fetched from the upstream by the mirror.",
                                    value=getattr(stats, "upstream_bytes", 0))


class Metrics:
    """The ``/metrics`` counters of one server, on a registry of its own (cache size measured at scrape time)."""

    def __init__(self, cache_dir: Path, mirror_stats: object | None = None, size_ttl: float = 10.0) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.served_bytes = Counter("modelcache_served_bytes", "Bytes of files served to clients.",
                                    registry=self.registry)
        self.hits = Counter("modelcache_cache_hits", "File requests answered from the cache.", registry=self.registry)
        self.misses = Counter("modelcache_cache_misses", "File requests the cache did not hold (mirror: filled).",
                              registry=self.registry)
        self.errors = Counter("modelcache_errors", "Error answers by kind (X-Error-Code).", ["kind"],
                              registry=self.registry)
        self.requests = Counter("modelcache_requests", "Requests by endpoint kind and status.",
                                ["endpoint", "status"], registry=self.registry)
        self.registry.register(_ScrapeTime(Path(cache_dir), mirror_stats, size_ttl))

    def render(self) -> bytes:
        """The metrics in the Prometheus text format."""
        return generate_latest(self.registry)


def request_log_line(method: str, path: str, status: int, kind: str, nbytes: int, started: float,
                     error_code: str | None = None) -> str:
    """One ``--log-json`` line for a request answered after ``started`` (``time.monotonic()``)."""
    return json.dumps({"method": method, "path": path, "status": status, "kind": kind, "bytes": nbytes,
                       "ms": round((time.monotonic() - started) * 1000, 1), **({"error": error_code} if error_code else {})})
