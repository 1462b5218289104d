"""#11.2: `download` never writes through a planted partial or state file (symlink, FIFO, hard
link, directory) — the target outside the cache is never truncated, written or read-blocked."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from helpers.fault_server import fault_server
from rel_helpers import model

from modelcache import ModelCache, Settings
from modelcache.errors import CacheError
from modelcache.hub.download.partial import state_path_for

SIZE = 700_000


def _mc(tmp_path: Path, url: str) -> ModelCache:
    return ModelCache(Settings(cache_dir=tmp_path / "cache", endpoint=url, connections=2, timeout=10,
                               small_file_bytes=0))  # partials are what these tests plant


def _victim(tmp_path: Path, name: str, data: bytes = b"precious root-owned data\n") -> Path:
    out = tmp_path / "outside"
    out.mkdir(exist_ok=True)
    p = out / name
    p.write_bytes(data)
    return p


def _unchanged(p: Path, data: bytes, st: os.stat_result) -> None:
    assert p.read_bytes() == data
    now = os.stat(p)
    assert (now.st_size, now.st_mtime_ns, now.st_ino) == (st.st_size, st.st_mtime_ns, st.st_ino)


@pytest.mark.skipif(os.geteuid() != 0, reason="the threat is a root download; run as root to test it")
def test_planted_symlinks_are_removed_not_followed(tmp_path: Path) -> None:
    repo = model("org/planted", SIZE)
    etag = repo.etag("model.safetensors")
    with fault_server(repo) as srv:
        mc = _mc(tmp_path, srv.url)
        layout = mc.layout(repo.repo_id)
        layout.blobs.mkdir(parents=True)
        data = b"precious root-owned data\n"
        victim, vstate = _victim(tmp_path, "victim", data), _victim(tmp_path, "victim-state", data)
        st, sst = os.stat(victim), os.stat(vstate)
        partial = layout.partial(etag)
        os.symlink(victim, partial)
        os.symlink(vstate, state_path_for(partial))
        # a link to a file that does not exist yet: must not be created through the link
        ghost = tmp_path / "outside" / "ghost"
        cfg = layout.partial(repo.etag("config.json"))
        os.symlink(ghost, cfg)
        mc.download(repo.repo_id)
    _unchanged(victim, data, st)
    _unchanged(vstate, data, sst)
    assert not ghost.exists()
    assert (layout.snapshot(repo.commit) / "model.safetensors").read_bytes() == repo.files["model.safetensors"]
    assert mc.check(repo.repo_id).ready
    assert not os.path.lexists(partial) and not os.path.lexists(state_path_for(partial))


def test_planted_fifos_never_block_and_are_removed(tmp_path: Path) -> None:
    repo = model("org/fifo", SIZE)
    etag = repo.etag("model.safetensors")
    with fault_server(repo) as srv:
        mc = _mc(tmp_path, srv.url)
        layout = mc.layout(repo.repo_id)
        layout.blobs.mkdir(parents=True)
        os.mkfifo(layout.partial(etag))
        os.mkfifo(state_path_for(layout.partial(repo.etag("config.json"))))
        os.mkfifo(state_path_for(layout.partial(repo.etag("tokenizer.json"))))
        mc.download(repo.repo_id)
    assert mc.check(repo.repo_id).ready
    assert all(r.ok for r in mc.verify(repo.repo_id))


def test_hard_linked_partial_is_never_written(tmp_path: Path) -> None:
    """A partial hard-linked to a file outside the cache (with a state claiming a dead writer)
    is copied from, never written."""
    repo = model("org/hardlink", SIZE)
    etag = repo.etag("model.safetensors")
    with fault_server(repo) as srv:
        mc = _mc(tmp_path, srv.url)
        layout = mc.layout(repo.repo_id)
        layout.blobs.mkdir(parents=True)
        data = b"x" * 1000
        victim = _victim(tmp_path, "victim", data)
        st = os.stat(victim)
        os.link(victim, layout.partial(etag))
        state_path_for(layout.partial(etag)).write_text(json.dumps({
            "etag": etag, "size": SIZE, "ino": st.st_ino, "dev": st.st_dev, "done": [[0, 1000]],
            "writer": {"host": os.uname().nodename, "pid": 999_999_999}}))
        mc.download(repo.repo_id)  # its bytes are copied as "resumed", fail the digest, are refetched
    _unchanged(victim, data, st)
    assert mc.check(repo.repo_id).ready


def test_a_directory_at_the_partial_is_a_clear_error(tmp_path: Path) -> None:
    repo = model("org/dir", SIZE)
    etag = repo.etag("model.safetensors")
    with fault_server(repo) as srv:
        mc = _mc(tmp_path, srv.url)
        layout = mc.layout(repo.repo_id)
        (layout.partial(etag) / "sub").mkdir(parents=True)
        with pytest.raises(CacheError) as exc:
            mc.download(repo.repo_id)
    assert "is a directory where a partial download belongs" in exc.value.message
    assert not mc.check(repo.repo_id).ready


@pytest.mark.skipif(os.geteuid() != 0, reason="the threat is a root mirror; run as root to test it")
def test_a_mirror_fill_never_writes_through_a_planted_link(tmp_path: Path) -> None:
    """#11.2, mirror side: a client asking a root mirror for a file whose partial is a planted
    link gets the right bytes; the link's target (a system file) is neither created nor written."""
    import httpx

    from modelcache.cache.layout import RepoLayout
    from modelcache.hub.client import HubClient
    from modelcache.server.background import running_server
    from modelcache.server.mirror import Mirror

    repo = model("org/mirrored", SIZE)
    etag = repo.etag("model.safetensors")
    cache = tmp_path / "cache"
    cache.mkdir()
    layout = RepoLayout(cache, "model", repo.repo_id)
    layout.blobs.mkdir(parents=True)
    data = b"precious root-owned data\n"
    victim = _victim(tmp_path, "victim", data)
    st = os.stat(victim)
    os.symlink(victim, layout.partial(etag))
    ghost = tmp_path / "outside" / "created-by-root"
    os.symlink(ghost, state_path_for(layout.partial(etag)))
    with fault_server(repo) as srv, running_server(cache, mirror=Mirror(Settings(cache_dir=cache), HubClient(srv.url))) as url:
        commit = httpx.get(f"{url}/api/models/{repo.repo_id}/revision/main").json()["sha"]
        r = httpx.get(f"{url}/{repo.repo_id}/resolve/{commit}/model.safetensors", timeout=60)
        assert r.status_code == 200 and r.content == repo.files["model.safetensors"]
    _unchanged(victim, data, st)
    assert not ghost.exists()


def test_leftover_private_copies_are_swept_by_the_next_download(tmp_path: Path) -> None:
    """A run killed mid-copy leaves a private copy of a partial: the next download (holding the
    blob's lock) removes it, and keeps the shared partial it resumes from."""
    repo = model("org/leftover", SIZE)
    etag = repo.etag("model.safetensors")
    with fault_server(repo) as srv:
        mc = _mc(tmp_path, srv.url)
        layout = mc.layout(repo.repo_id)
        layout.blobs.mkdir(parents=True)
        orphan = layout.blobs / f"{etag}.0123456789ab.w.incomplete"
        orphan.write_bytes(b"y" * 5000)
        other = layout.blobs / f"{'c' * 64}.0123456789ab.w.incomplete"  # another blob's: not ours
        other.write_bytes(b"z")
        mc.download(repo.repo_id)
    assert not orphan.exists() and other.exists()
    assert mc.check(repo.repo_id).ready
