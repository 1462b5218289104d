"""The huggingface_hub cache layout: where every file of a repo lives, and atomic writes to it.

``RepoLayout`` turns (cache root, repo type, repo id) into paths; every path it returns for a
file of the repo has passed ``refs.validate_repo_path`` and is checked to stay inside the repo
folder. Our own state lives in ``<repo folder>/.modelcache/``, where HF tools never look.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from ..errors import InvalidInput
from ..files import CorruptState, NotRegularFile, atomic_write_bytes, read_bounded, warn_corrupt, safe_iterdir
from ..validation import is_commit, validate_repo_id, validate_repo_path, validate_repo_type, validate_revision

__all__ = [
    "RepoLayout",
    "root_state",
    "folder_name",
    "parse_folder_name",
    "repo_layouts",
]

_PREFIX = {"model": "models", "dataset": "datasets", "space": "spaces"}
_TYPE_OF_PREFIX = {v: k for k, v in _PREFIX.items()}


def folder_name(repo_type: str, repo_id: str) -> str:
    """``models--org--name``, as huggingface_hub's ``repo_folder_name``."""
    validate_repo_type(repo_type)
    validate_repo_id(repo_id)
    return "--".join([_PREFIX[repo_type], *repo_id.split("/")])


def parse_folder_name(name: str) -> tuple[str, str] | None:
    """``models--org--name`` → ``("model", "org/name")``; None for anything else."""
    prefix, sep, rest = name.partition("--")
    if not sep or prefix not in _TYPE_OF_PREFIX:
        return None
    repo_id = rest.replace("--", "/")
    try:
        validate_repo_id(repo_id)
    except InvalidInput:
        return None
    return _TYPE_OF_PREFIX[prefix], repo_id


@dataclass(frozen=True)
class RepoLayout:
    """The layout of one repo of a cache (the repo id and type validated).

    Raises ``InvalidInput`` for a bad repo id or type.
    """

    cache_dir: Path
    repo_type: str
    repo_id: str

    def __post_init__(self) -> None:
        folder_name(self.repo_type, self.repo_id)  # validates both, once

    @cached_property
    def folder(self) -> Path:
        """The repo folder: ``<cache>/models--org--name`` (as huggingface_hub names it)."""
        return self.cache_dir / folder_name(self.repo_type, self.repo_id)

    @cached_property
    def blobs(self) -> Path:
        """``<repo>/blobs/``: file contents, named by their etag."""
        return self.folder / "blobs"

    @cached_property
    def snapshots(self) -> Path:
        """``<repo>/snapshots/``: one folder of symlinks per commit."""
        return self.folder / "snapshots"

    @cached_property
    def refs(self) -> Path:
        """``<repo>/refs/``: one file per branch or tag, holding its commit."""
        return self.folder / "refs"

    @cached_property
    def trees(self) -> Path:
        """``<repo>/trees/``: our recorded file lists, one JSON per commit."""
        return self.folder / "trees"

    @cached_property
    def state(self) -> Path:
        """Our own per-repo state (last use, partial-download records); invisible to HF tools."""
        return self.folder / ".modelcache"

    @cached_property
    def locks(self) -> Path:
        """``<cache>/.locks/<repo folder>/``: where HF keeps its lock files; ours sit beside them."""
        return self.cache_dir / ".locks" / self.folder.name

    @cached_property
    def repo_lock(self) -> Path:
        """Held for a moment while GC removes a revision, or a download/lease claims one."""
        return self.locks / "repo.mc-lock"

    def blob_lock(self, etag: str) -> Path:
        """The lock file of one blob (held while it is downloaded). Raises ``InvalidInput`` for a bad etag."""
        self.blob(etag)
        return self.locks / f"{etag}.mc-lock"

    def activity_marker(self, commit: str, token: str) -> Path:
        """A heartbeating file per process working on ``commit`` (GC leaves such revisions alone)."""
        return self.state / "active" / f"{commit}.{token}"

    def blob(self, etag: str) -> Path:
        """The path of blob ``etag``. Raises ``InvalidInput`` unless it is a 40-hex sha1 or 64-hex sha256."""
        if not etag or not all(c in "0123456789abcdef" for c in etag) or len(etag) not in (40, 64):
            raise InvalidInput(f"invalid blob id {etag!r}", "expected a 40-hex git sha1 or 64-hex sha256")
        return self.blobs / etag

    def partial(self, etag: str) -> Path:
        """Where a blob is assembled; stable across runs so a killed download can resume."""
        return self.blob(etag).with_name(etag + ".mc.incomplete")

    def snapshot(self, commit: str) -> Path:
        """The snapshot folder of ``commit``."""
        return self.snapshots / commit

    def snapshot_file(self, commit: str, path: str) -> Path:
        """The path of ``path`` in the snapshot of ``commit``. Raises ``InvalidInput`` for an unsafe path."""
        validate_repo_path(path)
        return self.snapshot(commit) / path

    def ref(self, revision: str) -> Path:
        """The ref file of ``revision`` (a branch or tag). Raises ``InvalidInput`` for an invalid revision."""
        validate_revision(revision)
        return self.refs / revision

    def tree_record(self, commit: str) -> Path:
        """Where the file list of ``commit`` is recorded (``trees/<commit>.json``)."""
        return self.trees / f"{commit}.json"

    @cached_property
    def tmp(self) -> Path:
        """Temp files of atomic writes (refs, records, state): where HF's scanner never looks."""
        return self.state / "tmp"

    def read_ref(self, revision: str) -> str | None:
        """The commit ``refs/<revision>`` names; None when missing or not a commit id.

        A FIFO, folder, link or junk planted there reads as missing (with a warning naming the
        file): it never blocks and never leaves the cache.
        """
        return _read_ref_file(self.ref(revision))

    def write_ref(self, revision: str, commit: str) -> None:
        """``refs/<rev>`` holds the commit with no trailing newline, written atomically.

        The temp file lives in ``.modelcache/tmp/`` so a kill never leaves a stray file under
        ``refs/`` (which huggingface_hub's ``scan_cache_dir()`` would read as a broken ref).
        """
        atomic_write_bytes(self.ref(revision), commit.encode(), root=self.cache_dir, tmp_dir=self.tmp)

    def commits(self) -> list[str]:
        """Commit ids with a snapshot folder (a real folder named by 40 hex; links and odd names skipped)."""
        try:
            if stat.S_ISLNK(os.lstat(self.snapshots).st_mode):
                return []
            with os.scandir(self.snapshots) as it:
                return sorted(e.name for e in it if is_commit(e.name) and e.is_dir(follow_symlinks=False))
        except OSError:
            return []

    def all_refs(self) -> dict[str, str]:
        """``{ref name: commit}`` for every regular file under ``refs/`` that names a commit."""
        out: dict[str, str] = {}
        try:
            if stat.S_ISLNK(os.lstat(self.refs).st_mode):
                return out
        except OSError:
            return out
        for root, dirs, files in os.walk(self.refs, followlinks=False):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for name in sorted(files):
                if name.startswith("."):
                    continue
                p = Path(root) / name
                commit = _read_ref_file(p)
                if commit is not None:
                    out[p.relative_to(self.refs).as_posix()] = commit
        return out


def _read_ref_file(path: Path) -> str | None:
    try:
        text = read_bounded(path, 4096).decode("utf-8").strip()
    except (FileNotFoundError, NotADirectoryError):
        return None
    except (NotRegularFile, OSError, UnicodeDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else "unreadable"
        warn_corrupt(CorruptState(path, why, f"remove it (`rm -rf '{path}'`) and download the revision again"))
        return None
    if not text:
        return None
    if not is_commit(text):
        warn_corrupt(CorruptState(path, "does not hold a 40-hex commit id",
                                  f"remove it (`rm -f '{path}'`) and download the revision again"))
        return None
    return text


def root_state(cache_dir: Path) -> Path:
    """Cache-wide state (quota): inside ``.locks/``, the one root entry HF's scanner skips."""
    return cache_dir / ".locks" / "modelcache"


def repo_layouts(cache_dir: Path) -> list[RepoLayout]:
    """Every repo folder of a cache root (``models--org--name`` and the like), sorted by name: the
    one way to enumerate the repos of a cache. Real folders only — a repo folder that is a
    symlink (planted, or pointing anywhere) is never entered; the root itself may be a link."""
    out = []
    for entry in sorted(safe_iterdir(Path(cache_dir), follow=True), key=lambda e: e.name):
        parsed = parse_folder_name(entry.name)
        if parsed is not None and entry.is_dir(follow_symlinks=False):
            out.append(RepoLayout(Path(cache_dir), *parsed))
    return out
