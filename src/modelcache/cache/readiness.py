"""The runtime cache check: can an engine start on this revision now? Local disk only.

Reads ``refs/``, the completeness record and ``stat``s the snapshot files — no hashing, no
network — so it answers in milliseconds even for a 140 GB model.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from ..profiles import (
    is_tokenizer_file,
    tokenizer_loadable,
    validate_profile,
    weight_files,
)
from ..validation import is_commit, validate_revision
from ..files import CorruptState, is_inside, read_json_state
from .layout import RepoLayout
from .records import read_record

__all__ = ["CheckResult", "check_revision", "resolve_commit"]


@dataclass(frozen=True)
class CheckResult:
    repo_id: str
    revision: str
    profile: str
    ready: bool
    reason: str
    commit: str | None = None
    snapshot: Path | None = None
    missing: tuple[str, ...] = ()
    wrong_size: tuple[tuple[str, int, int], ...] = ()
    notes: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict[str, object]:
        return {
            "repo_id": self.repo_id,
            "revision": self.revision,
            "profile": self.profile,
            "ready": self.ready,
            "reason": self.reason,
            "commit": self.commit,
            "snapshot": str(self.snapshot) if self.snapshot else None,
            "missing": list(self.missing),
            "wrong_size": [{"path": p, "expected": e, "actual": a} for p, e, a in self.wrong_size],
            "notes": list(self.notes),
        }


def resolve_commit(layout: RepoLayout, revision: str) -> str | None:
    """The commit a revision names in this cache: a commit id with a snapshot, or ``refs/<rev>``."""
    validate_revision(revision)
    if is_commit(revision) and layout.snapshot(revision).is_dir():
        return revision
    commit = layout.read_ref(revision)
    if commit is not None and is_commit(commit):
        return commit
    return None


def _size_of(path: Path) -> int | None:
    try:
        return os.stat(path).st_size  # follows the snapshot symlink to the blob
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError:
        return None


def _index_maps(snapshot: Path, paths: list[str], root: Path) -> dict[str, list[str]]:
    """Shards each ``*.index.json`` names. Read safely: only a bounded regular file inside the
    cache (a FIFO or a link out of the cache reads as an empty map, never blocks)."""
    maps: dict[str, list[str]] = {}
    for p in paths:
        if p.endswith(".index.json") and "/" not in p:
            maps[p] = []
            real = os.path.realpath(snapshot / p)
            if not is_inside(real, root):
                continue
            try:
                data = read_json_state(real, max_bytes=64 << 20, max_depth=16)
            except CorruptState:
                continue
            wmap = data.get("weight_map") if isinstance(data, dict) else None
            if isinstance(wmap, dict):
                maps[p] = sorted({v for v in wmap.values() if isinstance(v, str)})
    return maps


def check_revision(layout: RepoLayout, revision: str, profile: str) -> CheckResult:
    validate_profile(profile)

    def miss(reason: str, **kw: object) -> CheckResult:
        return CheckResult(layout.repo_id, revision, profile, False, reason, **kw)  # type: ignore[arg-type]

    if not layout.folder.is_dir():
        return miss(f"{layout.repo_id} is not in the cache at {layout.cache_dir}")
    commit = resolve_commit(layout, revision)
    if commit is None:
        return miss(f"revision {revision!r} of {layout.repo_id} is not in the cache (no refs/{revision})")
    snapshot = layout.snapshot(commit)
    if not snapshot.is_dir():
        return miss(f"snapshot {commit} is missing", commit=commit)

    record = read_record(layout.tree_record(commit), commit)
    notes: list[str] = []
    if record is None:
        expected = {
            p.relative_to(snapshot).as_posix(): None
            for p in snapshot.rglob("*")
            if not p.is_dir()
        }
        notes.append("no completeness record (trees/<commit>.json): sizes and the file list are not verified")
    else:
        expected = {p: e.size for p, e in record.files.items()}

    all_paths = sorted(expected)
    if profile == "tokenizer":
        required = [p for p in all_paths if is_tokenizer_file(p)]
    else:
        required = list(all_paths)

    missing: list[str] = []
    wrong: list[tuple[str, int, int]] = []
    for p in required:
        actual = _size_of(snapshot / p)
        if actual is None:
            missing.append(p)
        elif expected[p] is not None and actual != expected[p]:
            wrong.append((p, expected[p], actual))  # type: ignore[arg-type]

    if "config.json" not in expected:
        missing.append("config.json")
    if not tokenizer_loadable(all_paths):
        missing.append("tokenizer.json (or tiktoken.model / *.tiktoken / tokenizer.model)")
    if profile == "full":
        weights = weight_files(all_paths, _index_maps(snapshot, all_paths, layout.cache_dir))
        if weights is None:
            missing.append("weights (model.safetensors, pytorch_model.bin or shards of a *.index.json)")
        else:
            for w in sorted(weights):
                if w not in expected and w not in missing:
                    missing.append(w)
                elif _size_of(snapshot / w) is None and w not in missing:
                    missing.append(w)

    missing = list(dict.fromkeys(missing))
    if missing or wrong:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing: {', '.join(missing[:5])}{' …' if len(missing) > 5 else ''}")
        if wrong:
            parts.append(
                "wrong size: " + ", ".join(f"{p} ({a} bytes, expected {e})" for p, e, a in wrong[:5])
            )
        return miss(
            f"{layout.repo_id}@{revision} ({commit[:12]}) not ready for profile {profile}: " + "; ".join(parts),
            commit=commit,
            snapshot=snapshot,
            missing=tuple(missing),
            wrong_size=tuple(wrong),
            notes=tuple(notes),
        )
    return CheckResult(
        layout.repo_id,
        revision,
        profile,
        True,
        f"{layout.repo_id}@{revision} ({commit[:12]}) ready for profile {profile}: {len(required)} files",
        commit=commit,
        snapshot=snapshot,
        notes=tuple(notes),
    )
