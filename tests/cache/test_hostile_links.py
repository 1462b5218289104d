"""#11.1, #11.8–#11.11, #14.5: planted links never make modelcache read, write or delete
outside the cache; import/export/bundles never mix contents; a killed ref write never
leaves a temp file where huggingface_hub's scanner looks."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers.fs import tree_digest
from helpers.live_server import DEMO_MODEL, import_demo

from modelcache.cache.bundle import export_bundle, import_bundle
from modelcache.cache.gc import execute_gc, plan_gc, scan_revisions, sweep
from modelcache.cache.importer import import_folder, plan_import
from modelcache.cache.layout import RepoLayout
from modelcache.cache.publish import ensure_repo_dirs
from modelcache.cache.readiness import check_revision
from modelcache.cache.records import read_record
from modelcache.cache.remove import execute_removal, plan_removal
from modelcache.cache.usage import record_use
from modelcache.cache.verify import verify_revision
from modelcache.errors import IntegrityError, ModelCacheError
from modelcache.files import atomic_write_bytes, confined_rmtree, confined_unlink, create_exclusive

REPO = "org/m"




@pytest.fixture
def env(tmp_path: Path) -> tuple[Path, RepoLayout, str, Path]:
    cache = tmp_path / "cache"
    record = import_demo(cache, REPO)
    outside = tmp_path / "outside"
    outside.mkdir()
    for name in ("victim", "a" * 40, "b" * 64):
        (outside / name).write_bytes(b"precious " + name.encode())
    (outside / "sub").mkdir()
    (outside / "sub" / "deep").write_bytes(b"precious too")
    return cache, RepoLayout(cache, "model", REPO), record.commit, outside


def _collect_everything(cache: Path) -> None:
    plan = plan_gc(scan_revisions([cache]), max_age=0, now=time.time() + 10**6)
    execute_gc(plan)
    sweep(cache, partial_max_age=0)


# -- #11.1: gc / sweep / rm ------------------------------------------------------------------------------
def test_gc_never_deletes_through_a_linked_blobs_folder(env: tuple) -> None:
    cache, layout, commit, outside = env
    before = tree_digest(outside)
    # blobs/ replaced by a link to an outside folder holding files named like blobs
    for f in layout.blobs.iterdir():
        shutil.copy(f, outside / f.name)
    before = tree_digest(outside)
    shutil.rmtree(layout.blobs)
    os.symlink(outside, layout.blobs)
    _collect_everything(cache)
    assert tree_digest(outside) == before
    assert layout.blobs.is_symlink()  # not followed, not "cleaned" into the outside folder either


def test_gc_never_deletes_through_a_linked_state_folder(env: tuple) -> None:
    cache, layout, commit, outside = env
    record_use(layout, commit)
    shutil.rmtree(layout.state / "used")
    os.symlink(outside, layout.state / "used")
    (outside / commit).write_bytes(b"not ours")
    before = tree_digest(outside)
    _collect_everything(cache)
    assert tree_digest(outside) == before
    assert not record_use(layout, commit, 1.0)  # refuses to write through the link
    assert tree_digest(outside) == before


def test_orphan_sweep_ignores_links_and_links_out(env: tuple) -> None:
    cache, layout, commit, outside = env
    os.symlink(outside / ("a" * 40), layout.blobs / ("c" * 40))  # an "orphan blob" that is a link out
    os.symlink(outside / "victim", layout.blobs / f"{'d' * 40}.mc.incomplete")
    os.symlink(outside / "sub", layout.blobs / ("e" * 40))
    old = time.time() - 10 * 86400
    for p in layout.blobs.iterdir():
        os.utime(p, (old, old), follow_symlinks=False)
    before = tree_digest(outside)
    counts = sweep(cache, partial_max_age=0)
    assert tree_digest(outside) == before
    assert counts["orphan_blobs"] >= 1  # the links themselves are collected
    assert not os.path.lexists(layout.blobs / ("c" * 40))


def test_snapshot_links_out_are_never_followed_by_rm_or_gc(env: tuple) -> None:
    cache, layout, commit, outside = env
    snap = layout.snapshot(commit)
    os.symlink(outside / "victim", snap / "evil.bin")
    os.symlink(outside / "sub", snap / "evil-dir")
    os.symlink(outside, snap / "original" / "up")
    before = tree_digest(outside)
    plan = plan_removal(layout, [commit])
    assert all(str(b).startswith(os.path.realpath(cache)) for b in plan.blobs)
    execute_removal(layout, plan)
    assert tree_digest(outside) == before
    assert not layout.folder.exists()


def test_confined_primitives(tmp_path: Path) -> None:
    root, out = tmp_path / "root", tmp_path / "out"
    (root / "a").mkdir(parents=True)
    out.mkdir()
    (out / "f").write_text("x")
    os.symlink(out, root / "a" / "link")
    assert not confined_unlink(root / "a" / "link" / "f", root)  # through a link: refused
    assert confined_unlink(root / "a" / "link", root)  # the link itself: removed
    assert (out / "f").exists()
    os.symlink(out, root / "a" / "d")
    confined_rmtree(root / "a" / "d", root)
    confined_rmtree(root, tmp_path / "elsewhere")  # root outside the allowed root: refused
    assert (out / "f").exists() and (root / "a").exists()
    with pytest.raises(ModelCacheError, match="outside the cache"):
        _write_via_link(root, out)
    assert not (out / "state").exists()
    fd, p = create_exclusive(root, ".t.")
    os.close(fd)
    assert p.name.startswith(".t.") and len(p.name) > 12


def _write_via_link(root: Path, out: Path) -> None:
    os.symlink(out, root / "linked")
    atomic_write_bytes(root / "linked" / "state", b"1", root=root)


# -- #11.8: import DIR --------------------------------------------------------------------------------------
def test_import_copies_what_it_hashed_from_one_fd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "model"
    shutil.copytree(DEMO_MODEL, src)
    secret = tmp_path / "root-only"
    secret.write_bytes(b"x" * (src / "config.json").stat().st_size)
    os.chmod(secret, 0o600)
    items = plan_import(src)
    # between hashing and copying, the file is swapped for a link to a root-only file
    (src / "config.json").unlink()
    os.symlink(secret, src / "config.json")
    layout = RepoLayout(tmp_path / "cache", "model", REPO)
    from modelcache.cache import importer

    monkeypatch.setattr(importer, "plan_import", lambda folder: items)
    with pytest.raises(ModelCacheError):
        import_folder(layout, src)
    for blob in layout.blobs.iterdir():
        assert blob.read_bytes() != secret.read_bytes()


def test_import_swapped_content_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "model"
    shutil.copytree(DEMO_MODEL, src)
    items = plan_import(src)
    (src / "config.json").write_bytes(b"{" + b" " * ((src / "config.json").stat().st_size - 2) + b"}")
    from modelcache.cache import importer

    monkeypatch.setattr(importer, "plan_import", lambda folder: items)
    with pytest.raises(IntegrityError, match="changed"):
        import_folder(RepoLayout(tmp_path / "cache", "model", REPO), src)


def test_import_skips_fifos_and_refuses_links_out(tmp_path: Path) -> None:
    src = tmp_path / "model"
    shutil.copytree(DEMO_MODEL, src)
    os.mkfifo(src / "pipe.bin")
    assert "pipe.bin" not in {i.entry.path for i in plan_import(src)}  # no hang, not imported
    os.symlink("/etc/hostname", src / "leak.txt")
    with pytest.raises(ModelCacheError, match="leaves"):
        plan_import(src)


# -- #11.9 / #11.10: bundles -------------------------------------------------------------------------------
def test_export_never_follows_a_snapshot_link_out(env: tuple) -> None:
    cache, layout, commit, outside = env
    record = read_record(layout.tree_record(commit), commit)
    entry = record.files["config.json"]
    (outside / "stolen").write_bytes(b"S" * entry.size)
    link = layout.snapshot_file(commit, "config.json")
    link.unlink()
    os.symlink(outside / "stolen", link)
    buf = io.BytesIO()
    info = export_bundle(layout, record, "main", buf)
    assert b"S" * entry.size not in buf.getvalue()
    assert info.files == len(record.files) - 1


def _bundle_of(tmp_path: Path, name: str, mutate: bool) -> tuple[bytes, str]:
    src = tmp_path / name
    shutil.copytree(DEMO_MODEL, src)
    if mutate:
        (src / "config.json").write_text('{"model_type": "evil"}')
    other = tmp_path / f"{name}-cache"
    record = import_folder(RepoLayout(other, "model", REPO), src)
    buf = io.BytesIO()
    export_bundle(RepoLayout(other, "model", REPO), record, "main", buf)
    return buf.getvalue(), record.commit


def _forge(bundle: bytes, commit: str) -> bytes:
    """The same bundle claiming another commit id (a hostile or mistaken bundle)."""
    import json
    import tarfile

    src = tarfile.open(fileobj=io.BytesIO(bundle), mode="r")
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for m in src.getmembers():
            data = src.extractfile(m).read()
            if m.name == "modelcache-bundle.json":
                d = json.loads(data)
                d["commit"] = commit
                d["record"]["files"]  # keep the (other) record
                data = json.dumps(d).encode()
                m.size = len(data)
            tar.addfile(m, io.BytesIO(data))
    return out.getvalue()


def test_bundle_never_overwrites_a_cached_commit(env: tuple, tmp_path: Path) -> None:
    cache, layout, commit, outside = env
    before = tree_digest(layout.folder)
    evil, _ = _bundle_of(tmp_path, "evil", mutate=True)
    with pytest.raises(IntegrityError, match="already cached"):
        import_bundle(cache, io.BytesIO(_forge(evil, commit)))
    assert tree_digest(layout.folder) == before
    assert verify_revision(layout, commit).ok
    assert check_revision(layout, "main", "full").ready


def test_failed_bundle_import_leaves_the_cache_as_it_was(env: tuple, tmp_path: Path) -> None:
    cache, layout, commit, outside = env
    good, other_commit = _bundle_of(tmp_path, "other", mutate=True)
    damaged = bytearray(good)
    idx = damaged.rfind(b'"evil"')
    damaged[idx + 1] = ord("E")  # one flipped byte in a file: fails its hash
    before = tree_digest(cache)
    with pytest.raises(IntegrityError):
        import_bundle(cache, io.BytesIO(bytes(damaged)))
    after = tree_digest(cache)
    assert {k: v for k, v in after.items() if "/.modelcache/tmp" not in k} == \
        {k: v for k, v in before.items() if "/.modelcache/tmp" not in k}
    assert read_record(layout.tree_record(other_commit), other_commit) is None
    assert check_revision(layout, "main", "full").ready
    info = import_bundle(cache, io.BytesIO(good))  # the good one still imports afterwards
    assert info.commit == other_commit


def test_bundle_temp_and_cachedir_tag_never_written_through_links(env: tuple, tmp_path: Path) -> None:
    cache, layout, commit, outside = env
    bundle, other_commit = _bundle_of(tmp_path, "other", mutate=True)
    # links planted at every predictable temp name of the old code
    from modelcache.hashing import git_blob_sha1

    etag = git_blob_sha1(b'{"model_type": "evil"}')
    os.symlink(outside / "victim", layout.blobs / f"{etag}.bundle.incomplete")
    (cache / "CACHEDIR.TAG").unlink()
    os.symlink(outside / "created-by-root", cache / "CACHEDIR.TAG")  # dangling
    before = tree_digest(outside)
    import_bundle(cache, io.BytesIO(bundle))
    ensure_repo_dirs(layout)
    assert tree_digest(outside) == before
    assert not (outside / "created-by-root").exists()
    assert verify_revision(layout, other_commit).ok


# -- #14.5: a kill while writing a ref leaves nothing for HF's scanner --------------------------------------
_KILL_WRITER = """
import os, signal, sys
from pathlib import Path
import modelcache.files as f
from modelcache.cache.layout import RepoLayout
real_replace = os.replace
def die(src, dst):
    os.kill(os.getpid(), signal.SIGKILL)
os.replace = die
RepoLayout(Path(sys.argv[1]), "model", "org/m").write_ref(sys.argv[2], sys.argv[3])
"""


def test_killed_ref_write_leaves_scan_cache_dir_clean(env: tuple) -> None:
    cache, layout, commit, outside = env
    from huggingface_hub import scan_cache_dir

    for rev in ("main", "v1", "refs/pr/1"):
        p = subprocess.run([sys.executable, "-c", _KILL_WRITER, str(cache), rev, commit], timeout=60)
        assert p.returncode == -9
    assert list(layout.tmp.iterdir())  # the temp is there, where HF does not look
    report = scan_cache_dir(cache)
    assert report.warnings == [], report.warnings
    assert [r.repo_id for r in report.repos] == [REPO]
    # and gc sweeps stale ones
    old = time.time() - 3600
    for p in layout.tmp.iterdir():
        os.utime(p, (old, old))
    stray = layout.refs / ".main.abcd1234.tmp"  # left by an older version, in refs/
    stray.write_text(commit)
    os.utime(stray, (old, old))
    sweep(cache)
    assert not list(layout.tmp.iterdir()) and not stray.exists()
    assert scan_cache_dir(cache).warnings == []


def test_verify_repair_never_deletes_through_a_linked_blobs_folder(env: tuple) -> None:
    cache, layout, commit, outside = env
    from modelcache import ModelCache, Settings

    for f in layout.blobs.iterdir():
        (outside / f.name).write_bytes(b"not the blob: looks corrupt")
    before = tree_digest(outside)
    shutil.rmtree(layout.blobs)
    os.symlink(outside, layout.blobs)
    mc = ModelCache(Settings(cache_dir=cache, offline=True))
    try:
        mc.verify(REPO, repair=True)
    except ModelCacheError:
        pass  # offline: the repair cannot fetch; what matters is what it deleted
    assert tree_digest(outside) == before


def test_install_never_chmods_or_renames_through_a_planted_link(env: tuple) -> None:
    cache, layout, commit, outside = env
    from modelcache.cache.publish import install_blob

    victim = outside / "victim"
    os.chmod(victim, 0o600)
    tmp = layout.blobs / f"{'9' * 40}.mc.incomplete"
    os.symlink(victim, tmp)
    with pytest.raises(ModelCacheError, match="not a regular file"):
        install_blob(layout, "9" * 40, tmp)
    assert os.stat(victim).st_mode & 0o777 == 0o600  # not made group/world readable
    assert not os.path.lexists(layout.blob("9" * 40))


def test_a_symlinked_cache_root_still_works(tmp_path: Path) -> None:
    """The user's own choice (``~/.cache/huggingface/hub`` linked to a big disk) is not a planted link."""
    from modelcache.cache.inventory import scan_cache

    (tmp_path / "disk").mkdir()
    os.symlink(tmp_path / "disk", tmp_path / "hub")
    cache = tmp_path / "hub"
    import_demo(cache, "org/a")
    import_demo(cache, "org/b")
    assert len(scan_cache(cache)) == 2
    plan = plan_gc(scan_revisions([cache]), max_age=0, now=time.time() + 10**6)
    assert len(plan.remove) == 2
    execute_gc(plan)
    assert not any(list((tmp_path / "disk" / f"models--org--{n}" / "snapshots").iterdir()) for n in "ab")
    layout = RepoLayout(cache, "model", "org/a")
    import_demo(cache, "org/a")
    execute_removal(layout, plan_removal(layout, layout.commits()))
    assert not layout.folder.exists()
