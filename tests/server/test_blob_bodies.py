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
from modelcache.server._blob import open_verified
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
