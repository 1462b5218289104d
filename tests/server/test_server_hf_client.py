"""The real huggingface_hub client, pointed at our server, reads the cache as it would the Hub.

huggingface_hub is imported inside the tests, after the autouse fixture has cleaned HF_*: it
reads its environment once, at import time.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers.live_server import DEMO_MODEL, import_demo, live_server
from helpers.live_server import DEMO_REPO as REPO

from modelcache.cache.records import TreeRecord

DEMO_FILES = sorted(p.relative_to(DEMO_MODEL).as_posix() for p in DEMO_MODEL.rglob("*") if p.is_file())


def _api(url: str):
    from huggingface_hub import HfApi

    return HfApi(endpoint=url, token=False)


def test_snapshot_download_gets_every_file_byte_identical(demo_server: str, tmp_path: Path) -> None:
    from huggingface_hub import snapshot_download

    folder = Path(snapshot_download(REPO, endpoint=demo_server, cache_dir=tmp_path / "hf", token=False))
    got = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    assert got == DEMO_FILES
    for rel in DEMO_FILES:
        assert (folder / rel).read_bytes() == (DEMO_MODEL / rel).read_bytes(), rel
    # The client's own completeness record agrees with ours: same sizes, same ids.
    record = json.loads(next((tmp_path / "hf").glob("models--*/trees/*.json")).read_bytes())
    assert sorted(record["files"]) == DEMO_FILES


def test_snapshot_download_writes_blobs_named_by_our_etags(
    demo_server: str, demo_cache: tuple[Path, TreeRecord], tmp_path: Path
) -> None:
    from huggingface_hub import snapshot_download

    record = demo_cache[1]
    snapshot_download(REPO, endpoint=demo_server, cache_dir=tmp_path, token=False)
    blobs = {p.name for p in (tmp_path / "models--modelcache--tiny-llama" / "blobs").iterdir()}
    assert blobs == {e.etag for e in record.files.values()}
    assert (tmp_path / "models--modelcache--tiny-llama" / "refs" / "main").read_text() == record.commit


def test_hf_hub_download_single_and_nested_files(demo_server: str, tmp_path: Path) -> None:
    from huggingface_hub import hf_hub_download

    for name in ("config.json", "original/params.json", "model-00002-of-00002.safetensors"):
        path = hf_hub_download(REPO, name, endpoint=demo_server, cache_dir=tmp_path, token=False)
        assert Path(path).read_bytes() == (DEMO_MODEL / name).read_bytes()


def test_model_info_and_repo_info(demo_server: str, demo_cache: tuple[Path, TreeRecord]) -> None:
    record = demo_cache[1]
    api = _api(demo_server)
    info = api.model_info(REPO)
    assert info.id == REPO and info.sha == record.commit
    assert sorted(s.rfilename for s in info.siblings) == DEMO_FILES
    assert info.last_modified is not None and info.private is False
    assert api.repo_info(REPO, revision=record.commit).sha == record.commit

    detailed = api.model_info(REPO, files_metadata=True)
    by_name = {s.rfilename: s for s in detailed.siblings}
    shard = record.files["model-00001-of-00002.safetensors"]
    assert by_name[shard.path].size == shard.size
    assert by_name[shard.path].blob_id == shard.blob_id
    assert by_name[shard.path].lfs.sha256 == shard.lfs_sha256
    assert by_name["config.json"].lfs is None
    assert by_name["config.json"].blob_id == record.files["config.json"].blob_id


def test_list_repo_tree_follows_pages(demo_server: str, demo_cache: tuple[Path, TreeRecord]) -> None:
    from huggingface_hub.hf_api import RepoFile, RepoFolder

    record = demo_cache[1]
    api = _api(demo_server)  # the server was started with page_size=2: ~6 pages
    entries = list(api.list_repo_tree(REPO, recursive=True))
    files = {e.path: e for e in entries if isinstance(e, RepoFile)}
    assert sorted(files) == DEMO_FILES
    assert [e.path for e in entries if isinstance(e, RepoFolder)] == ["original"]
    shard = record.files["model-00002-of-00002.safetensors"]
    assert files[shard.path].lfs.sha256 == shard.lfs_sha256 and files[shard.path].blob_id == shard.blob_id
    assert files["original/params.json"].size == (DEMO_MODEL / "original/params.json").stat().st_size

    top = [e.path for e in api.list_repo_tree(REPO)]
    assert "original" in top and "original/params.json" not in top
    assert [e.path for e in api.list_repo_tree(REPO, path_in_repo="original")] == ["original/params.json"]
    assert sorted(api.list_repo_files(REPO)) == DEMO_FILES


def test_misses_raise_the_hub_errors(demo_server: str, tmp_path: Path) -> None:
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import (
        EntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    api = _api(demo_server)
    with pytest.raises(RepositoryNotFoundError):
        api.model_info("nobody/nothing")
    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download("nobody/nothing", "config.json", endpoint=demo_server, cache_dir=tmp_path, token=False)
    with pytest.raises(RevisionNotFoundError):
        api.model_info(REPO, revision="no-such-branch")
    with pytest.raises(RevisionNotFoundError):
        hf_hub_download(REPO, "config.json", revision="0" * 40, endpoint=demo_server, cache_dir=tmp_path, token=False)
    with pytest.raises(EntryNotFoundError):
        hf_hub_download(REPO, "no-such-file.txt", endpoint=demo_server, cache_dir=tmp_path, token=False)
    with pytest.raises(EntryNotFoundError):
        list(api.list_repo_tree(REPO, path_in_repo="no-such-folder"))
    # A file the commit does not have is remembered as absent, as with the Hub.
    assert list((tmp_path / "models--modelcache--tiny-llama" / ".no_exist").rglob("no-such-file.txt"))


def test_revision_as_commit_id_and_pr_ref(demo_server: str, demo_cache: tuple[Path, TreeRecord], tmp_path: Path) -> None:
    from huggingface_hub import hf_hub_download, snapshot_download

    cache, record = demo_cache
    folder = snapshot_download(REPO, revision=record.commit, endpoint=demo_server, cache_dir=tmp_path, token=False)
    assert Path(folder).name == record.commit

    api = _api(demo_server)
    pr_commit = api.model_info(REPO, revision="refs/pr/1").sha
    assert pr_commit not in (None, record.commit)
    readme = hf_hub_download(REPO, "README.md", revision="refs/pr/1", endpoint=demo_server, cache_dir=tmp_path, token=False)
    assert Path(readme).read_text() == "# the PR version\n"
    assert (tmp_path / "models--modelcache--tiny-llama" / "refs" / "refs" / "pr" / "1").read_text() == pr_commit


def test_dataset_and_single_name_repos(tmp_path: Path) -> None:
    from huggingface_hub import hf_hub_download, snapshot_download

    cache = tmp_path / "cache"
    import_demo(cache, "org/data", repo_type="dataset")
    import_demo(cache, "gpt2")
    with live_server(cache) as url:
        folder = snapshot_download("org/data", repo_type="dataset", endpoint=url, cache_dir=tmp_path / "hf", token=False)
        assert (Path(folder) / "original" / "params.json").is_file()
        assert _api(url).dataset_info("org/data").sha is not None
        path = hf_hub_download("gpt2", "config.json", endpoint=url, cache_dir=tmp_path / "hf", token=False)
        assert Path(path).read_bytes() == (DEMO_MODEL / "config.json").read_bytes()


def test_partial_cache_refuses_missing_shard_without_no_exist(tmp_path: Path) -> None:
    from huggingface_hub import hf_hub_download, snapshot_download
    from huggingface_hub.errors import EntryNotFoundError

    cache = tmp_path / "cache"
    record = import_demo(cache, REPO)
    shard = "model-00002-of-00002.safetensors"
    (cache / "models--modelcache--tiny-llama" / "snapshots" / record.commit / shard).unlink()
    hf = tmp_path / "hf"
    with live_server(cache) as url:
        path = hf_hub_download(REPO, "tokenizer.json", endpoint=url, cache_dir=hf, token=False)
        assert Path(path).read_bytes() == (DEMO_MODEL / "tokenizer.json").read_bytes()
        with pytest.raises(EntryNotFoundError):
            hf_hub_download(REPO, shard, endpoint=url, cache_dir=hf, token=False)
        with pytest.raises(EntryNotFoundError):
            snapshot_download(REPO, endpoint=url, cache_dir=hf, token=False)
        # The listing still shows the repo's real file list.
        assert sorted(s.rfilename for s in _api(url).model_info(REPO).siblings) == DEMO_FILES
    assert not (hf / "models--modelcache--tiny-llama" / ".no_exist").exists()
