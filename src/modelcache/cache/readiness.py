"""The runtime cache check: can an engine start on this revision now? Local disk only.

The rule (README "Readiness"): *tokenizer* = ``config.json`` + a loadable tokenizer
(``tokenizer.json``, ``tiktoken.model`` or ``*.tiktoken``); *full* = that + the weights by their
standard names (``model.safetensors``, ``pytorch_model.bin``, or every shard named in a
``*.index.json`` ``weight_map``) — other formats only with ``accept`` — + every file that was
*asked* for the revision (the recorded download requests, or ``include``/``exclude`` given to the
check; nothing recorded: every file of the commit) at the size the completeness record says.
Files of the commit that were not asked are information, not a reason. The JSON files of the
profile and tiktoken files are parsed (cached on blob, size and mtime); nothing is hashed and
the network is never touched, so it answers in milliseconds even for a 1000-shard model.
"""

from __future__ import annotations

import json
import os
import posixpath
import re
import stat
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InvalidInput
from ..profiles import (
    ACCEPT,
    config_candidates,
    is_tokenizer_file,
    needs_config_and_tokenizer,
    filter_paths,
    select,
    tokenizer_candidates,
    validate_accept,
    validate_profile,
    weight_source,
)
from ..validation import is_commit, validate_repo_path, validate_revision
from .layout import RepoLayout
from .loadable import MAX_PARSE_BYTES, FileStat, SnapshotReader, parse_problem, read_regular
from .records import FORMAT_VERSION
from .requests import asked_paths, read_requests

__all__ = ["CheckResult", "check_revision", "download_warnings", "resolve_commit"]


@dataclass(frozen=True)
class CheckResult:
    """The answer of ``check``: ``ready`` (also the truth value), why, and what is missing or broken."""

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
    problems: tuple[str, ...] = ()
    """Present but not loadable: ``tokenizer.json: not valid JSON``, a link out of the cache, …"""
    not_asked: int = 0
    """Files of the commit the download did not ask for (information, not a reason)."""

    def __bool__(self) -> bool:
        return self.ready

    def to_dict(self) -> dict[str, object]:
        """The result as JSON types: ``snapshot`` a string or None, ``wrong_size`` as ``{path, expected, actual}``."""
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
            "problems": list(self.problems),
            "not_asked": self.not_asked,
            "notes": list(self.notes),
        }


_PREFIX = re.compile(r"[0-9a-f]{7,39}")


def resolve_commit(layout: RepoLayout, revision: str, *, prefix: bool = False) -> str | None:
    """The commit a revision names in this cache: a commit id with a snapshot, or ``refs/<rev>``
    — what huggingface_hub resolves offline, so what ``check`` and the server accept.

    ``prefix``: also a unique prefix (7+ hex digits, as ``ls`` shows 12) of a cached commit, for
    the commands that manage the cache (``rm``, ``pin``, ``lease``, ``verify``, ``export``);
    ``InvalidInput`` when it matches several cached commits.
    """
    validate_revision(revision)
    if is_commit(revision) and layout.snapshot(revision).is_dir():
        return revision
    commit = layout.read_ref(revision)
    if commit is not None and is_commit(commit):
        return commit
    if prefix and _PREFIX.fullmatch(revision):
        matches = [c for c in layout.commits() if c.startswith(revision) and is_commit(c)]
        if len(matches) > 1:
            raise InvalidInput(f"{revision!r} is the start of {len(matches)} cached commits of {layout.repo_id}",
                               "give more digits (see `modelcache ls`)")
        if matches:
            return matches[0]
    return None


_INDEX_CACHE: dict[tuple[str, int, int], tuple[str | None, tuple[str, ...]]] = {}
_TOKENIZER_HINT = "a tokenizer (tokenizer.json, tiktoken.model or *.tiktoken)"
_WEIGHTS_HINT = "weights (model.safetensors, pytorch_model.bin or the shards of a *.index.json)"


def _index_shards(index: str, fs: FileStat) -> tuple[str | None, tuple[str, ...]]:
    """(problem, shard paths) of a ``*.index.json``; cached on (blob, size, mtime)."""
    key = (fs.real or "", fs.size or 0, fs.mtime_ns)
    if key in _INDEX_CACHE:
        return _INDEX_CACHE[key]
    if (fs.size or 0) > MAX_PARSE_BYTES:
        return f"{index}: too big to be an index", ()
    problem, data = parse_problem(index, fs, want_value=True)
    shards: set[str] = set()
    if problem is None:
        wmap = data.get("weight_map") if isinstance(data, dict) else None
        if not isinstance(wmap, dict) or not wmap or not all(isinstance(v, str) for v in wmap.values()):
            problem = "no weight_map naming the shards"
        else:
            folder = posixpath.dirname(index)
            for name in set(wmap.values()):
                path = posixpath.join(folder, name) if folder else name
                try:
                    validate_repo_path(path)
                except InvalidInput:
                    problem = f"names an invalid shard path {name!r}"
                    break
                shards.add(path)
    out = (f"{index}: {problem}" if problem else None, tuple(sorted(shards)))
    if len(_INDEX_CACHE) > 256:
        _INDEX_CACHE.clear()
    _INDEX_CACHE[key] = out
    return out


_BAD_PATH = re.compile(r"[\\\x00-\x1f]|^/|^[A-Za-z]:|(?:^|/)\.{0,2}(?:/|$)")
_RECORDS: dict[tuple[str, int, int], dict[str, int] | str | None] = {}
_CORRUPT = "the completeness record trees/{commit}.json is corrupt ({why}): nothing can be verified"


def _record_sizes(layout: RepoLayout, commit: str) -> dict[str, int] | str | None:
    """``{path: size}`` of the completeness record (``records.read_record``'s rules, paths
    validated as ``validate_repo_path`` does); None when there is none (or of another format);
    a problem (str) when it is there but corrupt. Cached on the record's (path, size, mtime): a
    polling check or ``ls`` parses it once."""
    path = str(layout.tree_record(commit))
    try:
        st = os.lstat(path)
    except OSError:
        return None
    if not stat.S_ISREG(st.st_mode):
        return _CORRUPT.format(commit=commit, why="not a regular file")
    key = (path, st.st_size, st.st_mtime_ns)
    if key in _RECORDS:
        return _RECORDS[key]
    out: dict[str, int] | str | None = None
    try:
        data = json.loads(read_regular(path, st.st_size))
        if data.get("format_version") == FORMAT_VERSION:
            out = {}
            for p, info in data["files"].items():
                size = info["size"]
                if (not isinstance(p, str) or len(p) > 1024 or _BAD_PATH.search(p) or type(size) is not int
                        or size < 0):
                    out = _CORRUPT.format(commit=commit, why=f"invalid entry {p[:80]!r}")
                    break
                out[p] = size
    except (OSError, ValueError, KeyError, TypeError, AttributeError, RecursionError) as exc:
        out = _CORRUPT.format(commit=commit, why=type(exc).__name__)
    if len(_RECORDS) > 256:
        _RECORDS.clear()
    _RECORDS[key] = out
    return out


def _snapshot_listing(snapshot: Path) -> dict[str, int | None]:
    out: dict[str, int | None] = {}
    for p in snapshot.rglob("*"):
        if not p.is_dir():
            out[p.relative_to(snapshot).as_posix()] = None
    return out


def check_revision(layout: RepoLayout, revision: str, profile: str, include: Sequence[str] | None = None,
                   exclude: Sequence[str] | None = None, accept: Sequence[str] = ()) -> CheckResult:
    """Can an engine start on ``revision`` with ``profile`` now? See the module docstring for the rule.

    ``include``/``exclude`` (either given): judge by that ask instead of the recorded ones.
    ``accept``: extra formats that count (``profiles.ACCEPT``: gguf, consolidated, adapter, sentencepiece).
    """
    validate_profile(profile)
    accept = validate_accept(accept)

    def miss(reason: str, **kw: object) -> CheckResult:
        return CheckResult(layout.repo_id, revision, profile, False, reason, **kw)  # type: ignore[arg-type]

    if not layout.folder.is_dir():
        return miss(f"{layout.repo_id} is not in the cache at {layout.cache_dir}")
    commit = resolve_commit(layout, revision)
    if commit is None:
        return miss(f"revision {revision!r} of {layout.repo_id} is not in the cache (no refs/{revision})")
    snapshot = layout.snapshot(commit)
    try:
        snap_ok = stat.S_ISDIR(os.lstat(snapshot).st_mode)
    except OSError:
        snap_ok = False
    if not snap_ok:
        return miss(f"snapshot {commit} is missing (or not a folder)", commit=commit)

    record = _record_sizes(layout, commit)
    if isinstance(record, str):
        return miss(f"{layout.repo_id}@{revision} ({commit[:12]}) not ready: {record}", commit=commit,
                    snapshot=snapshot, problems=(record,))
    notes: list[str] = []
    if record is None:
        expected = _snapshot_listing(snapshot)
        notes.append("no completeness record (trees/<commit>.json): sizes and the file list are not verified")
    else:
        expected = dict(record)
    tree = list(expected)

    if include is not None or exclude is not None:
        asked = set(select(tree, profile, include or (), exclude or ()))
    else:
        recorded = asked_paths(tree, profile, read_requests(layout, commit))
        asked = recorded if recorded is not None else set(select(tree, profile))
    not_asked = len(expected) - len(asked) if profile == "full" else 0

    reader = SnapshotReader(str(snapshot), str(layout.blobs))
    verdicts = str(layout.state / "parsed")
    root = str(layout.cache_dir)
    stats: dict[str, FileStat] = {}

    def st(path: str) -> FileStat:
        fs = stats.get(path)
        if fs is None:
            fs = stats[path] = reader.stat(path)
        return fs

    missing: list[str] = []
    problems: list[str] = []
    wrong: list[tuple[str, int, int]] = []
    parse: list[str] = []

    def need(path: str) -> bool:
        """Require ``path``; True when it is there (right size, a regular file)."""
        fs = st(path)
        if fs.problem:
            problems.append(f"{path}: {fs.problem}")
            return False
        if fs.size is None:
            missing.append(path)
            return False
        want = expected.get(path)
        if want is not None and fs.size != want:
            wrong.append((path, want, fs.size))
            return False
        return True

    # the engine's needs: weights, config, tokenizer (each named when absent)
    source = weight_source(asked, accept) or weight_source(tree, accept)
    need_config, need_tokenizer = needs_config_and_tokenizer(source)
    if profile == "full":
        if source is None:
            other = weight_source(tree, ACCEPT)  # a format only an explicit --accept counts: say which
            fmt = other and next((a for a in ACCEPT if weight_source(other[1], (a,)) == other), None)
            missing.append(_WEIGHTS_HINT + (f"; {other[1][0]} counts only with --accept {fmt}" if fmt else ""))
        elif source[0] == "index":
            index = source[1][0]
            if need(index):
                problem, shards = _index_shards(index, st(index))
                if problem:
                    problems.append(problem)
                for shard in shards:
                    if shard not in expected and record is not None:
                        problems.append(f"{shard}: named by {index} but not a file of the commit")
                    else:
                        need(shard)
        else:
            for name in source[1]:
                need(name)
    if need_config:
        configs = config_candidates(asked, accept) or config_candidates(tree, accept) or ["config.json"]
        if need(configs[0]):
            parse.append(configs[0])
    if need_tokenizer:
        choices = tokenizer_candidates(asked, accept) or tokenizer_candidates(tree, accept)
        if not choices:
            other_tok = tokenizer_candidates(tree, ACCEPT)  # only an --accept format: say which
            fmt = other_tok and ("sentencepiece" if other_tok[0] == "tokenizer.model" else "consolidated")
            missing.append(_TOKENIZER_HINT + (f"; {other_tok[0]} counts only with --accept {fmt}" if fmt else ""))
        else:
            good = next((c for c in choices if st(c).size is not None and not st(c).problem
                         and st(c).size == expected.get(c, st(c).size)
                         and parse_problem(c, st(c), verdicts=verdicts, root=root)[0] is None), None)
            if good is None:
                if need(choices[0]):
                    parse.append(choices[0])
    # every file that was asked, at the recorded size; the profile's JSON files parsed
    for path in sorted(asked):
        if need(path) and path.endswith(".json") and is_tokenizer_file(path):
            parse.append(path)
    for path in dict.fromkeys(parse):
        fs = st(path)
        problem, _ = parse_problem(path, fs, verdicts=verdicts, root=root)
        if problem:
            problems.append(f"{path}: {problem}")
        elif (fs.size or 0) > MAX_PARSE_BYTES:
            notes.append(f"{path} is over {MAX_PARSE_BYTES >> 20} MiB: not parsed")
    if not_asked:
        notes.append(f"{not_asked} file(s) of the commit were not asked for (profile/--include/--exclude): "
                     "not needed to be ready")

    missing = list(dict.fromkeys(missing))
    problems = list(dict.fromkeys(problems))
    required = len(stats)
    kw = dict(commit=commit, snapshot=snapshot, notes=tuple(notes), not_asked=not_asked)
    if missing or wrong or problems:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing: {', '.join(missing[:5])}{' …' if len(missing) > 5 else ''}")
        if wrong:
            parts.append(
                "wrong size: " + ", ".join(f"{p} ({a} bytes, expected {e})" for p, e, a in wrong[:5])
            )
        if problems:
            parts.append("not loadable: " + "; ".join(problems[:5]) + (" …" if len(problems) > 5 else ""))
        return miss(
            f"{layout.repo_id}@{revision} ({commit[:12]}) not ready for profile {profile}: " + "; ".join(parts),
            missing=tuple(missing), wrong_size=tuple(wrong), problems=tuple(problems), **kw,
        )
    return CheckResult(
        layout.repo_id, revision, profile, True,
        f"{layout.repo_id}@{revision} ({commit[:12]}) ready for profile {profile}: {required} files",
        **kw,  # type: ignore[arg-type]
    )


def download_warnings(layout: RepoLayout, commit: str, tree_paths: Sequence[str], profile: str,
                      include: Sequence[str] = (), exclude: Sequence[str] = ()) -> list[str]:
    """What a finished download should warn about: a pattern or profile that matched no file,
    or a result an engine cannot load (an index naming a shard the commit lacks, …)."""
    out = [f"--include {p!r} matches no file of the commit" for p in include if not filter_paths(tree_paths, [p])]
    if not select(tree_paths, profile, include, exclude):
        out.append(f"profile {profile} matches no file of {layout.repo_id}@{commit[:12]}")
    result = check_revision(layout, commit, profile, tuple(include), tuple(exclude))
    if not result.ready:
        out.append(result.reason.replace(f"@{commit} ", " ", 1) + " (see `modelcache check`)")
    return out
