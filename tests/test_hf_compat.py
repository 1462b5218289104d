"""huggingface_hub as a peer: it reads what `modelcache download` wrote, unchanged and offline."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers.procs import clean_env
from helpers.live_server import live_server

from modelcache import ModelCache, Settings

REPO = "modelcache/tiny-llama"


@pytest.fixture
def served(tmp_path: Path, demo_model: Path):  # type: ignore[no-untyped-def]
    source = tmp_path / "source"
    record = ModelCache(Settings(cache_dir=source)).import_folder(demo_model, REPO)
    with live_server(source) as url:
        yield url, record


def test_hf_reads_our_download_offline(tmp_path: Path, served) -> None:  # type: ignore[no-untyped-def]
    from huggingface_hub import hf_hub_download, scan_cache_dir, snapshot_download

    url, record = served
    target = tmp_path / "target"
    with ModelCache(Settings(cache_dir=target, endpoint=url)) as mc:
        result = mc.download(REPO)
    snap = snapshot_download(REPO, cache_dir=target, local_files_only=True)
    assert Path(snap) == result.snapshot
    cfg = hf_hub_download(REPO, "original/params.json", cache_dir=target, local_files_only=True)
    assert Path(cfg).read_bytes() == (result.snapshot / "original/params.json").read_bytes()

    info = scan_cache_dir(target)
    assert info.warnings == []
    (repo,) = info.repos
    assert repo.repo_id == REPO and repo.nb_files == len(record.files)
    (rev,) = repo.revisions
    assert rev.commit_hash == record.commit and rev.refs == frozenset({"main"})
    assert repo.size_on_disk == record.total_size


def test_hf_cache_verify_passes(tmp_path: Path, served) -> None:  # type: ignore[no-untyped-def]
    url, record = served
    target = tmp_path / "target"
    with ModelCache(Settings(cache_dir=target, endpoint=url)) as mc:
        mc.download(REPO)
    hf = Path(sys.executable).with_name("hf")
    env = clean_env(HF_ENDPOINT=url, HF_HUB_DISABLE_TELEMETRY="1", HF_HOME=str(tmp_path / "home"))
    proc = subprocess.run([str(hf), "cache", "verify", REPO, "--cache-dir", str(target)],
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # and a corrupted blob makes it fail: the check is real
    blob = Path(os.path.realpath(target / f"models--modelcache--tiny-llama/snapshots/{record.commit}/config.json"))
    blob.write_bytes(blob.read_bytes().replace(b"llama", b"LLAMA"))
    proc = subprocess.run([str(hf), "cache", "verify", REPO, "--cache-dir", str(target)],
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0


def test_tokenizer_profile_is_incomplete_for_hf_but_usable(tmp_path: Path, served) -> None:  # type: ignore[no-untyped-def]
    from huggingface_hub import hf_hub_download, snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    url, _ = served
    target = tmp_path / "target"
    with ModelCache(Settings(cache_dir=target, endpoint=url)) as mc:
        mc.download(REPO, profile="tokenizer")
    assert Path(hf_hub_download(REPO, "tokenizer.json", cache_dir=target, local_files_only=True)).is_file()
    # the completeness record lists every file: HF refuses to call the snapshot whole
    with pytest.raises(LocalEntryNotFoundError):
        snapshot_download(REPO, cache_dir=target, local_files_only=True)
    assert Path(snapshot_download(REPO, cache_dir=target, local_files_only=True,
                                  allow_patterns=["*.json"], ignore_patterns=["*index*", "original/*"])).is_dir()


def test_we_read_what_hf_downloaded(tmp_path: Path, served) -> None:  # type: ignore[no-untyped-def]
    from huggingface_hub import snapshot_download

    url, record = served
    target = tmp_path / "hf-made"
    snapshot_download(REPO, cache_dir=target, endpoint=url, token=False)
    mc = ModelCache(Settings(cache_dir=target, offline=True))
    assert mc.check(REPO).ready
    assert mc.check(REPO, profile="tokenizer").ready
    # and a download on top of it fetches nothing
    with live_server(tmp_path / "source") as url2, ModelCache(Settings(cache_dir=target, endpoint=url2)) as mc2:
        assert mc2.download(REPO).bytes_fetched == 0
