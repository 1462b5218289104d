"""Reading and writing the registry file, safely with several writers on a shared volume.

Every write is a whole new file renamed over the old one (readers see the old registry or the
new one, never half of one). Writers take a ``FileLock`` (an ``O_EXCL`` file with heartbeat;
works on NFS) around read-modify-write so two hosts do not lose each other's change; and
because a lock can be taken over from a writer that stalled, the writer also checks that the
file's ``generation`` did not move under it before it replaces the file, and redoes its change
on the newer registry if it did. Readers never lock.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TypeVar

from ..files import CorruptState, atomic_write_bytes, read_json_state
from ..cache.layout import root_state
from ..cache.locks import FileLock, read_lock
from ..errors import CacheError
from .registry import Registry

__all__ = ["RegistryStore", "registry_path"]

T = TypeVar("T")


def registry_path(cache_dir: Path) -> Path:
    """``<cache>/.locks/modelcache/models.json``: cache-wide state huggingface_hub's scanner skips."""
    return root_state(Path(cache_dir)) / "models.json"


class RegistryStore:
    """The registry file of one cache: ``read`` without a lock, ``update`` under one."""

    def __init__(self, cache_dir: Path, *, stale_after: float = 30.0, lock_timeout: float = 60.0) -> None:
        self.root = Path(cache_dir)
        self.path = registry_path(cache_dir)
        self.stale_after = stale_after
        self.lock_timeout = lock_timeout

    @property
    def lock_path(self) -> Path:
        """The lock file writers take: ``models.json.mc-lock`` beside the registry."""
        return self.path.with_name(self.path.name + ".mc-lock")

    def read(self) -> Registry:
        """The registry as it is on disk now (empty when there is no file yet).

        ``CacheError`` when the file is not what modelcache writes (junk, a FIFO, a link, too big)."""
        hint = "restore it from a backup, or move it aside to start an empty registry"
        try:  # bounded, regular file only (no FIFO hang, no link followed), finite numbers, bounded depth
            data = read_json_state(self.path, max_bytes=64 << 20, max_depth=16, hint=hint)
        except CorruptState as exc:
            raise CacheError(f"the model registry {self.path} is unreadable ({exc.why})", hint) from None
        if data is None:
            return Registry()
        try:
            return Registry.from_bytes(json.dumps(data).encode())
        except (ValueError, OverflowError) as exc:
            raise CacheError(f"the model registry {self.path} is unreadable ({exc})",
                             "restore it from a backup, or move it aside to start an empty registry") from None

    def update(self, change: Callable[[Registry], tuple[Registry, T]]) -> T:
        """Apply ``change`` (pure: registry → (new registry, result)) and write the result atomically.

        When ``change`` returns the registry unchanged, nothing is written.
        """
        lock = FileLock(self.lock_path, purpose="model registry", stale_after=self.stale_after)
        try:
            if not lock.acquire(timeout=self.lock_timeout, poll=0.02):
                holder = read_lock(self.lock_path)
                who = f" by {holder.host} pid {holder.pid}" if holder and holder.host else ""
                raise CacheError(f"the model registry is locked{who} for more than {self.lock_timeout:.0f}s",
                                 f"if that writer is gone its lock is taken over {self.stale_after:.0f}s after its "
                                 "last heartbeat; try again")
        except OSError as exc:
            raise CacheError(f"cannot lock the model registry at {self.lock_path}: {exc.strerror or exc}",
                             "the cache volume must be writable to change the registry") from None
        try:
            for _ in range(20):
                before = self.read()
                after, result = change(before)
                if after is before:
                    return result
                if self.read().generation != before.generation:  # a writer that lost its lock got in
                    time.sleep(0.01)
                    continue
                try:
                    atomic_write_bytes(self.path, replace(after, generation=before.generation + 1).to_bytes(), root=self.root)
                except OSError as exc:
                    raise CacheError(f"cannot write the model registry {self.path}: {exc.strerror or exc}",
                                     "check free space and permissions on the cache volume") from None
                return result
            raise CacheError("the model registry kept changing while it was being updated",
                             "another writer is very busy or broken; try again")
        finally:
            lock.release()
