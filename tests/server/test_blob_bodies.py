"""Big file bodies (``server/_blob.py``): sent from a descriptor verified to be the remembered
blob, zero-copy under ``serve``'s protocol, and never a short body that looks whole."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import httpx
from helpers.live_server import live_server

from modelcache.cache.importer import import_folder
from modelcache.cache.layout import RepoLayout
from modelcache.server._blob import open_verified, single_range
from modelcache.server._reader import Reader
from modelcache.server._auth import Gate
from modelcache.server._routes import parse_target

PATH = "/org/big/resolve/main/weights.safetensors"


def _cache(tmp_path: Path, size: int) -> tuple[Path, bytes]:
    src = tmp_path / "src"
    src.mkdir()
    data = os.urandom(1 << 20) * (size >> 20)
    (src / "weights.safetensors").write_bytes(data)
    (src / "config.json").write_text("{}")
    cache = tmp_path / "cache"
    import_folder(RepoLayout(cache, "model", "org/big"), src, revision="main")
    return cache, data


def test_a_blob_swapped_after_its_hit_is_never_opened(tmp_path: Path) -> None:
    cache, data = _cache(tmp_path, 1 << 20)
    reader = Reader(cache, 100, None, Gate(None))
    hit = reader.find(PATH.encode(), parse_target(PATH.encode()))
    fd = open_verified(hit)
    assert fd is not None and os.pread(fd, 16, 0) == data[:16]
    os.close(fd)
    outside = tmp_path / "secret"
    outside.write_bytes(b"s" * len(data))  # same size, outside the cache
    blob = Path(hit.real)
    kept = tmp_path / "kept"
    os.replace(blob, kept)
    blob.symlink_to(outside)
    assert open_verified(hit) is None  # a link: not followed
    blob.unlink()
    blob.write_bytes(data)  # the same bytes, another file: not the one validated
    assert open_verified(hit) is None
    blob.unlink()
    os.mkfifo(blob)
    assert open_verified(hit) is None  # and a FIFO never blocks the open
    blob.unlink()
    os.replace(kept, blob)
    fd = open_verified(hit)
    assert fd is not None
    os.close(fd)


def test_zero_copy_bodies_are_whole_and_repeatable(tmp_path: Path) -> None:
    cache, data = _cache(tmp_path, 8 << 20)
    with live_server(cache) as url, httpx.Client(base_url=url, timeout=30) as c:
        for _ in range(3):  # slow path first, then remembered; one keep-alive connection
            r = c.get(PATH)
            assert r.status_code == 200 and r.content == data
        assert c.get("/org/big/resolve/main/config.json").content == b"{}"  # the connection still frames answers


def test_a_blob_truncated_while_sent_drops_the_connection(tmp_path: Path) -> None:
    cache, data = _cache(tmp_path, 32 << 20)  # far more than the socket buffers
    with live_server(cache) as url:
        assert httpx.get(url + PATH, timeout=30).content == data  # remembered
        real = os.path.realpath(cache / "models--org--big" / "snapshots" /
                                os.listdir(cache / "models--org--big" / "snapshots")[0] / "weights.safetensors")
        port = int(url.rsplit(":", 1)[1])
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
            s.connect(("127.0.0.1", port))
            s.settimeout(30)
            s.sendall(f"GET {PATH} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            got = s.recv(65536)
            time.sleep(0.3)  # the server fills the socket buffers and waits
            os.truncate(real, 4 << 20)  # a co-tenant spoils the blob mid-answer
            while chunk := s.recv(1 << 20):
                got += chunk
        head, _, body = got.partition(b"\r\n\r\n")
        assert b"content-length: %d" % len(data) in head.lower()
        assert len(body) < len(data)  # cut short, and the connection closed: the client sees an error


def test_single_ranges_are_read_as_starlette_reads_them() -> None:
    from starlette.responses import FileResponse

    size = 1000
    for header in ["bytes=0-9", "bytes=10-", "bytes=-5", "bytes=-5000", "bytes=990-5000", "bytes=999-999",
                   "bytes=0-0", "bytes=5-3", "bytes=1000-", "bytes=-0", "bytes=0-9,20-29", "bytes= 0-9",
                   "Bytes=0-9", "items=0-9", "bytes=x-9", "bytes=0-١", "bytes=", "bytes=-"]:
        ours = single_range(header, size)
        try:
            theirs = FileResponse._parse_range_header(header, size)
        except Exception:
            theirs = None
        if ours is not None:  # ours answers only what Starlette answers with exactly one range
            assert theirs == [ours], header
        elif header in ("bytes=0-9", "bytes=10-", "bytes=-5", "bytes=-5000", "bytes=990-5000"):
            raise AssertionError(f"{header} should be served zero-copy")


def test_ranges_of_a_remembered_blob(tmp_path: Path) -> None:
    cache, data = _cache(tmp_path, 2 << 20)
    size = len(data)
    with live_server(cache) as url, httpx.Client(base_url=url, timeout=30) as c:
        c.get(PATH)
        for header, want in [("bytes=10-99", data[10:100]), (f"bytes={size - 5}-", data[-5:]), ("bytes=-7", data[-7:]),
                             ("bytes=0-", data), ("bytes=0-9,20-29", None)]:
            r = c.get(PATH, headers={"Range": header})
            assert r.status_code == 206, header
            if want is not None:
                assert r.content == want and r.headers["content-length"] == str(len(want))
                start = size - len(want) if header.startswith(("bytes=-", f"bytes={size - 5}")) else int(header[6:].split("-")[0])
                assert r.headers["content-range"] == f"bytes {start}-{start + len(want) - 1}/{size}"
            else:
                assert r.headers["content-type"].startswith("multipart/byteranges")
        r = c.get(PATH, headers={"Range": f"bytes={size}-"})
        assert r.status_code == 416 and r.headers["x-error-code"] == "RangeNotSatisfiable"
        assert c.get(PATH, headers={"Range": "bytes=5-3"}).status_code == 400


def test_head_of_a_range_announces_it_without_a_body(tmp_path: Path) -> None:
    from starlette.testclient import TestClient

    from modelcache.server import create_app

    cache, data = _cache(tmp_path, 1 << 20)
    with live_server(cache) as url, httpx.Client(base_url=url, timeout=30) as c, TestClient(create_app(cache)) as t:
        for client in (c, t):
            client.get(PATH)
            r = client.head(PATH, headers={"Range": "bytes=10-19"})
            assert r.status_code == 206 and r.content == b"" and r.headers["content-range"] == f"bytes 10-19/{len(data)}"
            assert r.headers["content-length"] == "10"
            assert client.get(PATH, headers={"Range": "bytes=10-19"}).content == data[10:20]
