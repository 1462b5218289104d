"""The server over raw HTTP: headers, ranges, errors, path safety, partial and legacy caches."""

from __future__ import annotations

import socket
import time
from pathlib import Path
from urllib.parse import urlparse

import httpx
import pytest
from helpers.live_server import DEMO_MODEL, import_demo, live_server
from helpers.live_server import DEMO_REPO as REPO

from modelcache.cache.importer import import_folder
from modelcache.cache.layout import RepoLayout
from modelcache.cache.records import TreeRecord

FOLDER = "models--modelcache--tiny-llama"
SHARD = "model-00001-of-00002.safetensors"
SECRET = b"TOP-SECRET-OUTSIDE-THE-CACHE"


def _client(url: str) -> httpx.Client:
    return httpx.Client(base_url=url, trust_env=False, timeout=10)


def _raw_get(url: str, target: str) -> bytes:
    """Send ``target`` byte for byte (httpx would normalise ``..`` away) and read the whole answer."""
    u = urlparse(url)
    with socket.create_connection((u.hostname, u.port), timeout=10) as s:
        s.sendall(f"GET {target} HTTP/1.1\r\nHost: {u.netloc}\r\nConnection: close\r\n\r\n".encode())
        chunks = []
        while data := s.recv(65536):
            chunks.append(data)
    return b"".join(chunks)


def _assert_error(r: httpx.Response, status: int, code: str | None = None) -> None:
    assert r.status_code == status, r.text
    assert r.headers.get("x-error-code"), "every error carries X-Error-Code"
    assert r.headers.get("x-error-message")
    if code is not None:
        assert r.headers["x-error-code"] == code
    if r.request.method == "GET":
        assert "error" in r.json()


def test_healthz(demo_server: str) -> None:
    assert _client(demo_server).get("/healthz").json() == {"status": "ok"}


def test_head_carries_hub_headers(demo_server: str, demo_cache: tuple[Path, TreeRecord]) -> None:
    record = demo_cache[1]
    for name in (SHARD, "config.json"):
        entry = record.files[name]
        r = _client(demo_server).head(f"/{REPO}/resolve/main/{name}")
        assert r.status_code == 200
        h = r.headers
        assert h["x-repo-commit"] == record.commit
        assert h["etag"] == h["x-linked-etag"] == f'"{entry.etag}"'
        assert h["x-linked-size"] == h["content-length"] == str(entry.size)
        assert h["accept-ranges"] == "bytes"
        assert h["content-type"] == "application/octet-stream"
        assert "x-xet-hash" not in h and "xet" not in h.get("link", "")
        assert r.content == b""


def test_get_whole_file_and_ranges(demo_server: str) -> None:
    data = (DEMO_MODEL / SHARD).read_bytes()
    c = _client(demo_server)
    url = f"/{REPO}/resolve/main/{SHARD}"
    assert c.get(url).content == data

    r = c.get(url, headers={"Range": "bytes=10-99"})
    assert r.status_code == 206
    assert r.headers["content-range"] == f"bytes 10-99/{len(data)}"
    assert r.headers["content-length"] == "90" and r.content == data[10:100]
    assert r.headers["x-linked-size"] == str(len(data))

    r = c.get(url, headers={"Range": "bytes=1000-"})
    assert r.status_code == 206 and r.content == data[1000:]
    assert r.headers["content-range"] == f"bytes 1000-{len(data) - 1}/{len(data)}"

    r = c.get(url, headers={"Range": f"bytes={len(data)}-"})
    _assert_error(r, 416)
    assert r.headers["content-range"] == f"bytes */{len(data)}"


def test_commit_and_encoded_pr_revisions(demo_server: str, demo_cache: tuple[Path, TreeRecord]) -> None:
    record = demo_cache[1]
    c = _client(demo_server)
    r = c.get(f"/{REPO}/resolve/{record.commit}/original/params.json")
    assert r.content == (DEMO_MODEL / "original/params.json").read_bytes()
    for rev in ("refs%2Fpr%2F1", "refs/pr/1"):
        r = c.get(f"/{REPO}/resolve/{rev}/README.md")
        assert r.status_code == 200 and r.content == b"# the PR version\n"
    info = c.get(f"/api/models/{REPO}/revision/refs%2Fpr%2F1").json()
    assert info["sha"] == r.headers["x-repo-commit"] != record.commit
    assert [e["path"] for e in c.get(f"/api/models/{REPO}/tree/main/original").json()] == ["original/params.json"]


def test_tree_pagination_by_link_header(demo_server: str, demo_cache: tuple[Path, TreeRecord]) -> None:
    record = demo_cache[1]
    c = _client(demo_server)
    url: str | None = f"{demo_server}/api/models/{REPO}/tree/refs%2Fpr%2F1?recursive=true&expand=false"
    pages = []
    while url:
        r = c.get(url)
        assert r.status_code == 200
        page = r.json()
        assert 0 < len(page) <= 2
        pages.append(page)
        url = r.links.get("next", {}).get("url")
        if url:
            assert "refs%2Fpr%2F1" in url and "recursive=true" in url
    paths = [e["path"] for page in pages for e in page]
    assert paths == sorted(paths) and len(paths) == len(set(paths))
    assert set(paths) == set(record.files) | {"original"}
    folder = next(e for page in pages for e in page if e["path"] == "original")
    assert folder["type"] == "directory" and len(folder["oid"]) == 40
    _assert_error(c.get(f"/api/models/{REPO}/tree/main?cursor=!!!"), 400)


def test_errors_carry_codes(demo_server: str, demo_cache: tuple[Path, TreeRecord]) -> None:
    record = demo_cache[1]
    c = _client(demo_server)
    _assert_error(c.get("/nobody/nothing/resolve/main/config.json"), 404, "RepoNotFound")
    _assert_error(c.get("/api/models/nobody/nothing"), 404, "RepoNotFound")
    _assert_error(c.get("/datasets/modelcache/tiny-llama/resolve/main/config.json"), 404, "RepoNotFound")
    r = c.get(f"/{REPO}/resolve/nope/config.json")
    _assert_error(r, 404, "RevisionNotFound")
    assert "x-repo-commit" not in r.headers
    r = c.head(f"/{REPO}/resolve/main/missing.bin")
    _assert_error(r, 404, "EntryNotFound")
    assert r.headers["x-repo-commit"] == record.commit
    _assert_error(c.get(f"/{REPO}/resolve/main/original"), 404, "EntryNotFound")
    _assert_error(c.get(f"/api/models/{REPO}/tree/main/config.json"), 404, "EntryNotFound")
    _assert_error(c.get("/favicon.ico"), 404)
    _assert_error(c.post(f"/api/models/{REPO}"), 405)
    _assert_error(c.get(f"/api/models/{REPO}/revision/main/extra"), 404)
    _assert_error(c.get("/a--b/c/resolve/main/x"), 400)
    _assert_error(c.get(f"/{REPO}/resolve/main/"), 400)


@pytest.mark.parametrize(
    "target",
    [
        f"/{REPO}/resolve/main/../../../../../../etc/passwd",
        f"/{REPO}/resolve/main/%2e%2e%2f%2e%2e%2f%2e%2e%2f%2e%2e%2f%2e%2e%2fsecret.txt",
        f"/{REPO}/resolve/main/..%2F..%2F..%2F..%2F..%2Fsecret.txt",
        f"/{REPO}/resolve/%2e%2e/secret.txt",
        f"/{REPO}/resolve/main/%2Fetc%2Fpasswd",
        f"/{REPO}/resolve/main/..%5C..%5Csecret.txt",
        f"/{REPO}/resolve/main/config.json%00",
        "/../../../etc/passwd",
        "/api/models/../../etc/tree/main",
        f"/api/models/{REPO}/tree/main/..%2F..%2F..",
    ],
)
def test_traversal_is_refused(tmp_path: Path, target: str) -> None:
    cache = tmp_path / "cache"
    import_demo(cache)
    (tmp_path / "secret.txt").write_bytes(SECRET)
    with live_server(cache) as url:
        answer = _raw_get(url, target)
    status = int(answer.split(b" ", 2)[1])
    assert 400 <= status < 500, answer[:200]
    assert SECRET not in answer and b"root:" not in answer
    assert b"x-error-code" in answer.lower()


def test_symlink_leaving_the_cache_is_refused(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    record = import_demo(cache)
    secret = tmp_path / "secret.txt"
    secret.write_bytes(SECRET.ljust(record.files["config.json"].size, b"!"))  # even at the right size
    snapshot = cache / FOLDER / "snapshots" / record.commit
    link = snapshot / "config.json"
    link.unlink()
    link.symlink_to(secret)
    (snapshot / "original").rename(snapshot / "original.bak")
    (snapshot / "original").symlink_to(tmp_path)  # a folder link that leaves the cache
    (tmp_path / "params.json").write_bytes(SECRET)
    with live_server(cache) as url:
        c = _client(url)
        for name in ("config.json", "original/params.json"):
            r = c.get(f"/{REPO}/resolve/main/{name}")
            _assert_error(r, 404, "EntryNotFound")
            assert SECRET not in r.content
        assert c.get(f"/{REPO}/resolve/main/tokenizer.json").status_code == 200


def test_partial_cache_serves_what_it_has(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    record = import_demo(cache)
    snapshot = cache / FOLDER / "snapshots" / record.commit
    (snapshot / "model-00002-of-00002.safetensors").unlink()
    # A file of the wrong size (truncated copy instead of the blob link) is not served either.
    (snapshot / "tokenizer_config.json").unlink()
    (snapshot / "tokenizer_config.json").write_bytes(b"{}")
    with live_server(cache) as url:
        c = _client(url)
        for name in ("model-00002-of-00002.safetensors", "tokenizer_config.json"):
            for r in (c.head(f"/{REPO}/resolve/main/{name}"), c.get(f"/{REPO}/resolve/main/{name}")):
                _assert_error(r, 404, "EntryNotFound")
                assert "x-repo-commit" not in r.headers
                assert "not cached here" in r.headers["x-error-message"]
        assert c.get(f"/{REPO}/resolve/main/{SHARD}").content == (DEMO_MODEL / SHARD).read_bytes()
        listed = {e["path"] for e in c.get(f"/api/models/{REPO}/tree/main?recursive=true").json()}
        assert set(record.files) <= listed


def test_legacy_cache_without_record(tmp_path: Path) -> None:
    """A cache written by an old HF client: no trees/<commit>.json, metadata from the links."""
    cache = tmp_path / "cache"
    record = import_demo(cache)
    (cache / FOLDER / "trees" / f"{record.commit}.json").unlink()
    snapshot = cache / FOLDER / "snapshots" / record.commit
    copied = snapshot / "generation_config.json"  # a copied-in file (HF_HUB_DISABLE_SYMLINKS)
    data = copied.read_bytes()
    copied.unlink()
    copied.write_bytes(data)
    (snapshot / "escape.txt").symlink_to(tmp_path / "secret.txt")
    (tmp_path / "secret.txt").write_bytes(SECRET)
    with live_server(cache, page_size=100) as url:
        c = _client(url)
        tree = {e["path"]: e for e in c.get(f"/api/models/{REPO}/tree/main?recursive=true").json()}
        assert "escape.txt" not in tree
        for path, entry in record.files.items():
            assert tree[path]["oid"] == entry.blob_id and tree[path]["size"] == entry.size, path
            assert tree[path].get("lfs", {}).get("oid") == entry.lfs_sha256
            r = c.head(f"/{REPO}/resolve/main/{path}")
            assert r.status_code == 200 and r.headers["etag"] == f'"{entry.etag}"', path
        assert c.get(f"/{REPO}/resolve/main/{SHARD}").content == (DEMO_MODEL / SHARD).read_bytes()
        r = c.get(f"/{REPO}/resolve/main/escape.txt")
        _assert_error(r, 404, "EntryNotFound")
        assert SECRET not in r.content
        # Without a file list, a miss is "not cached here", never "absent upstream".
        r = c.head(f"/{REPO}/resolve/main/other.bin")
        _assert_error(r, 404, "EntryNotFound")
        assert "x-repo-commit" not in r.headers


def test_on_served_is_called_and_its_errors_swallowed(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    record = import_demo(cache)
    calls: list[tuple[str, str]] = []

    def record_use(layout, commit: str) -> None:
        calls.append((layout.repo_id, commit))
        raise RuntimeError("the last-use store is broken")

    with live_server(cache, on_served=record_use) as url:
        c = _client(url)
        assert c.head(f"/{REPO}/resolve/main/config.json").status_code == 200
        assert c.get(f"/{REPO}/resolve/main/config.json").status_code == 200
        assert c.get(f"/{REPO}/resolve/main/{SHARD}", headers={"Range": "bytes=0-9"}).status_code == 206
        assert c.get(f"/{REPO}/resolve/main/config.json").status_code == 200
        deadline = time.monotonic() + 10
        while not calls and time.monotonic() < deadline:  # told off the event loop, in the background
            time.sleep(0.01)
    # GETs only, at most once a second per revision (it writes), and its errors never reach a client
    assert calls == [(REPO, record.commit)]


def test_record_is_read_once_per_commit(tmp_path: Path) -> None:
    """Records are immutable per commit: served from memory after the first request."""
    cache = tmp_path / "cache"
    record = import_demo(cache)
    with live_server(cache) as url:
        c = _client(url)
        assert c.get(f"/api/models/{REPO}").json()["sha"] == record.commit
        (cache / FOLDER / "trees" / f"{record.commit}.json").write_text("garbage")
        assert len(c.get(f"/api/models/{REPO}").json()["siblings"]) == len(record.files)


def test_large_file_streams_whole_and_in_ranges(tmp_path: Path) -> None:
    """Files above the small-file threshold take the streaming path (1 MiB reads)."""
    src = tmp_path / "src"
    src.mkdir()
    data = bytes(range(256)) * (3 * 4096 + 7)  # ~3 MiB, not a multiple of the chunk size
    (src / "weights.safetensors").write_bytes(data)
    (src / "config.json").write_text("{}")
    import_folder(RepoLayout(tmp_path / "cache", "model", "org/big"), src)
    with live_server(tmp_path / "cache") as url:
        c = _client(url)
        r = c.get("/org/big/resolve/main/weights.safetensors")
        assert r.status_code == 200 and r.content == data
        assert r.headers["content-length"] == str(len(data))
        r = c.get("/org/big/resolve/main/weights.safetensors", headers={"Range": f"bytes={(1 << 20) - 5}-"})
        assert r.status_code == 206 and r.content == data[(1 << 20) - 5 :]
        r = c.get("/org/big/resolve/main/weights.safetensors", headers={"Range": "bytes=0-0"})
        assert r.status_code == 206 and r.content == data[:1]
