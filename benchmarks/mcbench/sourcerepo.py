"""The source repos the benchmarks download: random files on disk, their hashes, HF metadata.

A folder is served as one repo revision (:class:`Repo`). Files >= 1 MiB or ``*.safetensors`` are
LFS files (ETag = sha256 of the content, tree ``oid`` = git sha1 of the LFS pointer); the others
are regular files (ETag = git blob sha1). Hashes are computed once and cached in a JSON sidecar
next to the repo folder (``<root>.hashes.json``). :func:`generate_repo` makes (or re-uses) a
folder of random files.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "FileInfo",
    "Repo",
    "generate_repo",
    "git_blob_sha1",
    "lfs_pointer",
    "model_text_files",
    "write_random_file",
]

LFS_THRESHOLD = 1 << 20
HASH_BLOCK = 4 << 20


# ------------------------------------------------------------------------------------------------
# The repo on disk
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FileInfo:
    path: str  # repo-relative, '/'-separated
    size: int
    lfs: bool
    sha256: str | None  # LFS files only
    blob_oid: str  # git blob sha1 of the content (regular) or of the LFS pointer (LFS)
    pointer_size: int | None

    @property
    def etag(self) -> str:
        return self.sha256 if self.lfs and self.sha256 else self.blob_oid

    def tree_item(self) -> dict[str, object]:
        item: dict[str, object] = {"type": "file", "oid": self.blob_oid, "size": self.size, "path": self.path}
        if self.lfs:
            item["lfs"] = {"oid": self.sha256, "size": self.size, "pointerSize": self.pointer_size}
        return item


def _is_lfs(path: str, size: int) -> bool:
    return size >= LFS_THRESHOLD or path.endswith(".safetensors")


def lfs_pointer(sha256: str, size: int) -> bytes:
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


def git_blob_sha1(data: bytes) -> str:
    h = hashlib.sha1(b"blob %d\0" % len(data))
    h.update(data)
    return h.hexdigest()


def _hash_file(path: Path, size: int, lfs: bool) -> tuple[str | None, str, int | None]:
    if lfs:
        h = hashlib.sha256()
        with open(path, "rb", buffering=0) as f:
            while True:
                b = f.read(HASH_BLOCK)
                if not b:
                    break
                h.update(b)
        sha = h.hexdigest()
        ptr = lfs_pointer(sha, size)
        return sha, git_blob_sha1(ptr), len(ptr)
    h = hashlib.sha1(b"blob %d\0" % size)
    with open(path, "rb", buffering=0) as f:
        while True:
            b = f.read(HASH_BLOCK)
            if not b:
                break
            h.update(b)
    return None, h.hexdigest(), None


def sidecar_for(root: Path) -> Path:
    return root.parent / f"{root.name}.hashes.json"


class Repo:
    """A folder served as one repo revision. Hashes come from (and go to) the JSON sidecar."""

    def __init__(self, root: str | os.PathLike[str], repo_id: str) -> None:
        self.root = Path(root).resolve()
        self.repo_id = repo_id
        if not self.root.is_dir():
            raise SystemExit(f"repo root {self.root} is not a directory")
        self.files: dict[str, FileInfo] = {}
        self._load()
        manifest = "\n".join(f"{p} {f.etag} {f.size}" for p, f in sorted(self.files.items()))
        self.commit = hashlib.sha1(f"{repo_id}\n{manifest}".encode()).hexdigest()
        dirs: set[str] = set()
        for p in self.files:
            parts = p.split("/")[:-1]
            for i in range(1, len(parts) + 1):
                dirs.add("/".join(parts[:i]))
        self.dirs = sorted(dirs)

    def _load(self) -> None:
        side = sidecar_for(self.root)
        try:
            cached = json.loads(side.read_text())
        except (OSError, ValueError):
            cached = {}
        changed = False
        for dirpath, dirnames, filenames in os.walk(self.root):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for name in sorted(filenames):
                if name.startswith("."):
                    continue
                full = Path(dirpath) / name
                rel = full.relative_to(self.root).as_posix()
                st = full.stat()
                c = cached.get(rel)
                if c and c.get("size") == st.st_size and c.get("mtime_ns") == st.st_mtime_ns:
                    sha, oid, psize = c.get("sha256"), c["blob_oid"], c.get("pointer_size")
                else:
                    sha, oid, psize = _hash_file(full, st.st_size, _is_lfs(rel, st.st_size))
                    cached[rel] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": sha,
                                   "blob_oid": oid, "pointer_size": psize}
                    changed = True
                self.files[rel] = FileInfo(rel, st.st_size, _is_lfs(rel, st.st_size), sha, oid, psize)
        for rel in list(cached):
            if rel not in self.files:
                del cached[rel]
                changed = True
        if changed:
            tmp = side.with_suffix(".tmp")
            tmp.write_text(json.dumps(cached, indent=0, sort_keys=True))
            os.replace(tmp, side)

    def manifest(self) -> dict[str, dict[str, object]]:
        return {p: {"size": f.size, "etag": f.etag, "lfs": f.lfs} for p, f in self.files.items()}


# ------------------------------------------------------------------------------------------------
# Generation of scenario repos
# ------------------------------------------------------------------------------------------------
def write_random_file(path: Path, size: int) -> None:
    """Incompressible bytes (os.urandom, 1 MiB blocks): every file differs."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".gen-tmp")
    block = 1 << 20
    with open(tmp, "wb", buffering=0) as f:
        left = size
        while left > 0:
            n = min(block, left)
            f.write(os.urandom(n))
            left -= n
    os.replace(tmp, path)


def _json_blob(size: int, seed: int) -> bytes:
    """A JSON document of about ``size`` bytes (a fake vocab), distinct per seed."""
    out = ['{"version":"1.0","seed":%d,"model":{"type":"BPE","vocab":{' % seed]
    n, i = len(out[0]), 0
    while n < size - 64:
        tok = hashlib.blake2b(b"%d:%d" % (seed, i), digest_size=6).hexdigest()
        piece = f'"{tok}":{i},'
        out.append(piece)
        n += len(piece)
        i += 1
    out.append('"<eos>":%d}}}\n' % i)
    return "".join(out).encode()


def generate_repo(root: str | os.PathLike[str], files: list[tuple[str, int]], *,
                  text_files: dict[str, bytes] | None = None) -> bool:
    """Create ``root`` with ``files`` (path, size) of random bytes plus ``text_files``.

    Re-uses what is already there with the right size (so repeated runs do not regenerate);
    removes stray files. Returns True when something was (re)written.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    wanted: set[str] = set()
    changed = False
    for rel, size in files:
        wanted.add(rel)
        p = root / rel
        if p.is_file() and p.stat().st_size == size:
            continue
        write_random_file(p, size)
        changed = True
    for rel, data in (text_files or {}).items():
        wanted.add(rel)
        p = root / rel
        if p.is_file() and p.read_bytes() == data:
            continue
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
        changed = True
    for dirpath, _dirs, names in os.walk(root):
        for name in names:
            rel = (Path(dirpath) / name).relative_to(root).as_posix()
            if rel not in wanted:
                os.unlink(Path(dirpath) / name)
                changed = True
    return changed


def model_text_files(shards: list[str], tokenizer_size: int = 512 * 1024, seed: int = 0) -> dict[str, bytes]:
    """config.json, tokenizer.json (+ a safetensors index when there are shards)."""
    cfg = {"architectures": ["BenchForCausalLM"], "model_type": "llama", "hidden_size": 4096,
           "num_hidden_layers": 32, "vocab_size": 32000, "torch_dtype": "bfloat16", "seed": seed}
    out = {"config.json": (json.dumps(cfg, indent=2) + "\n").encode(),
           "tokenizer.json": _json_blob(tokenizer_size, seed)}
    if shards:
        weight_map = {f"model.layers.{i}.weight": shards[i % len(shards)] for i in range(4 * len(shards))}
        out["model.safetensors.index.json"] = (json.dumps({"metadata": {}, "weight_map": weight_map}, indent=2)
                                               + "\n").encode()
    return out
