"""What the transfer engine is given and what it reports: one ``FileJob`` per file, ``EngineStats``."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ...protocol import FileEntry
from .assembly import Assembly

__all__ = ["EngineStats", "FileJob"]


@dataclass
class FileJob:
    """One file to download: its entry, URL, partial blob path and what to do once verified."""

    entry: FileEntry
    url: str
    partial: "object"  # pathlib.Path of the partial blob
    on_verified: Callable[[FileEntry], None]
    """Called (from a worker) once the partial holds verified bytes: rename it into place."""
    on_start: Callable[[Assembly], None] | None = None
    """Called with the file's assembly before any byte moves (a mirror streams from it)."""
    fence: Callable[[], bool] | None = None
    """False once this process no longer holds the blob's lock: the file is dropped (``lost``)."""
    install_bytes: Callable[[FileEntry, bytes], object] | None = None
    """For a small file (at most ``Settings.small_file_bytes``): fetched whole into memory, verified there,
    and handed over as bytes to be written as the blob — no partial file, no resume state, no lock
    (a content-addressed blob needs none: two writers install the same verified bytes). When set,
    ``partial``, ``on_start``, ``fence`` and ``install`` are not used."""
    install: Callable[[FileEntry, int, Path], object] | None = None
    """Given the fd of the verified, synced partial and the writer's private name for it: make
    *that inode* the blob (never the shared partial name, which another writer may have swapped;
    return None when the private name is not ours any more). Without it, ``on_verified``
    renames the shared name (legacy)."""
    folder: int | None = None
    """An fd on the partial's folder (``blobs/``) that the caller holds for the run
    (``files.HeldFolders``): the partial's files are reached through it, not by path."""


@dataclass
class EngineStats:
    """Counters of one run: bytes fetched and resumed, retries, restarts. Thread-safe through ``add``."""

    bytes_fetched: int = 0
    bytes_resumed: int = 0
    retries: int = 0
    restarts: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, **kw: int) -> None:
        """Add to counters by name (``add(retries=1)``), under the lock."""
        with self.lock:
            for k, v in kw.items():
                setattr(self, k, getattr(self, k) + v)
