"""A co-tenant who swaps ``blobs/`` for a link to an outside folder right after a download
checked it (the race every path-based check loses) gets nothing written there: the download's
files are created and renamed relative to the folder it checked, never through the new link."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from helpers.fault_server import Repo, fault_server

from modelcache.errors import ModelCacheError
from modelcache.hub.download import assembly
from modelcache.service.model_cache import ModelCache
from modelcache.settings import Settings


def _listing(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


@pytest.mark.parametrize("when", ["before-claim", "after-claim"])
def test_blobs_swapped_for_a_link_after_the_check_gets_nothing_written_outside(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, when: str) -> None:
    repo = Repo("org/swap", {"model.safetensors": os.urandom(600_000)})  # one blob: its writer runs to the end
    outside = tmp_path / "outside"
    outside.mkdir()
    cache = tmp_path / "cache"
    real_claim = assembly.claim_partial
    swapped = []

    def racing_co_tenant(partial: Path, etag: str, size: int, *held: int):  # type: ignore[no-untyped-def]
        # (``held``: the fd on blobs/ the download holds for its run, opened before this swap)
        blobs = partial.parent
        out = real_claim(partial, etag, size, *held) if when == "after-claim" else None
        if not swapped:  # the co-tenant wins the race once: blobs/ is now a link to its folder
            os.rename(blobs, blobs.with_name("blobs.moved"))
            os.symlink(outside, blobs)
            swapped.append(True)
        return out or real_claim(partial, etag, size, *held)

    monkeypatch.setattr(assembly, "claim_partial", racing_co_tenant)
    with fault_server(repo, chunk=16 * 1024, delay=0.05) as srv:  # slow: progress checkpoints happen
        mc = ModelCache(Settings(cache_dir=cache, endpoint=srv.url, retries=1, small_file_bytes=0))  # the partial path
        try:
            mc.download(repo.repo_id)
        except ModelCacheError as exc:
            assert "refusing" in exc.message  # refusing is fine; writing outside is not
    assert swapped
    assert _listing(outside) == [], "a download wrote through a blobs/ link swapped in after its check"


@pytest.mark.parametrize("what", ["ref", "record", "snapshot-link", "tmp"])
def test_state_folder_swapped_after_its_check_gets_nothing_written_outside(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, what: str) -> None:
    """refs/, trees/, a snapshot folder or .modelcache/tmp/ swapped for a link between its check
    (``shared_mkdir``, or opening it as a held folder) and the write: nothing is created in the
    folder it points at."""
    from helpers.live_server import DEMO_MODEL

    from modelcache import files, folders
    from modelcache.cache.importer import commit_id_for, plan_import
    from modelcache.cache.layout import RepoLayout
    from modelcache.cache.publish import ensure_repo_dirs, link_file, publish_record
    from modelcache.cache.records import TreeRecord

    cache = tmp_path / "cache"
    outside = tmp_path / "outside"
    outside.mkdir()
    layout = RepoLayout(cache, "model", "org/swap")
    ensure_repo_dirs(layout)
    items = plan_import(DEMO_MODEL)
    record = TreeRecord.of(commit_id_for([i.entry for i in items]), [i.entry for i in items])
    entry = next(iter(record.files.values()))
    victim = {"ref": layout.refs, "record": layout.trees, "snapshot-link": layout.snapshot(record.commit),
              "tmp": layout.tmp}[what]
    real_mkdir = files.shared_mkdir

    def racing_co_tenant(path: Path, root: Path | None = None) -> None:
        real_mkdir(path, root)
        if Path(path) == victim and not os.path.islink(victim):  # checked: now swap it
            os.rename(victim, victim.with_name(victim.name + ".moved"))
            os.symlink(outside, victim)

    real_open_child = folders._open_child

    def racing_open(parent_fd: int, name: str, create: bool, shown: Path, root: Path) -> int:
        fd = real_open_child(parent_fd, name, create, shown, root)
        if Path(shown) == victim and not os.path.islink(victim):  # held by fd now: swap it
            os.rename(victim, victim.with_name(victim.name + ".moved"))
            os.symlink(outside, victim)
        return fd

    monkeypatch.setattr(files, "shared_mkdir", racing_co_tenant)
    monkeypatch.setattr(folders, "_open_child", racing_open)
    try:
        if what == "ref":
            layout.write_ref("main", record.commit)
        elif what in ("record", "tmp"):
            publish_record(layout, record)
        else:
            link_file(layout, record.commit, entry)
    except ModelCacheError:
        pass
    assert os.path.islink(victim), "the co-tenant never got to swap the folder: the test tests nothing"
    assert _listing(outside) == [], f"a write went through {victim.name}/ swapped for a link after its check"


def test_bundle_import_with_blobs_swapped_after_the_check_writes_nothing_outside(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``import`` of a bundle (as root, from a co-tenant's reach): blobs/ swapped for a link after
    ``ensure_repo_dirs`` checked it gets no temp file and no blob."""
    import io

    from helpers.live_server import import_demo

    from modelcache.cache.bundle import export_bundle, import_bundle
    from modelcache.cache.layout import RepoLayout
    from modelcache.cache.records import read_record

    src_cache = tmp_path / "src"
    record = import_demo(src_cache, "org/b")
    buf = io.BytesIO()
    export_bundle(RepoLayout(src_cache, "model", "org/b"), read_record(
        RepoLayout(src_cache, "model", "org/b").tree_record(record.commit), record.commit), "main", buf)
    outside = tmp_path / "outside"
    outside.mkdir()
    cache = tmp_path / "cache"
    from modelcache.cache import publish

    real_create = publish.create_exclusive

    def racing_co_tenant(folder: Path, prefix: str, suffix: str = ".tmp", mode: int = 0o600):  # type: ignore[no-untyped-def]
        blobs = cache / "models--org--b" / "blobs"  # checked a moment ago: now it is a link
        if not os.path.islink(blobs):
            os.rename(blobs, blobs.with_name("blobs.moved"))
            os.symlink(outside, blobs)
        return real_create(folder, prefix, suffix, mode)

    monkeypatch.setattr(publish, "create_exclusive", racing_co_tenant)
    buf.seek(0)
    with pytest.raises(ModelCacheError):
        import_bundle(cache, buf)
    assert _listing(outside) == []
