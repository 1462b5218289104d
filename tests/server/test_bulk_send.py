"""Zero-copy bodies sent in bulk (``_blob._BulkSocket``): corked, one blocking ``sendfile`` per hop
with the transport's reading paused — and the socket put back exactly as it was, every time."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
import threading
from pathlib import Path

import pytest
import uvloop
from helpers.bulk_socket import KeepTransport, socket_state
from helpers.live_server import DEMO_MODEL, DEMO_REPO, import_demo, live_server

from modelcache.cache.importer import import_folder
from modelcache.cache.layout import RepoLayout
from modelcache.server._blob import sendfile_body

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="TCP_CORK and SO_SNDTIMEO are Linux's")
MiB = 1 << 20


@linux_only
@pytest.mark.parametrize("loop_kind", ["asyncio", "uvloop"])
def test_a_body_goes_whole_and_the_socket_is_put_back(tmp_path: Path, loop_kind: str) -> None:
    data = os.urandom(16 * MiB + 123)  # more than a send buffer holds: the body is still going out when
    blob = tmp_path / "blob"
    blob.write_bytes(data)
    got = bytearray()

    async def main() -> None:
        loop = asyncio.get_running_loop()
        proto: list[KeepTransport] = []
        server = await loop.create_server(lambda: proto.append(KeepTransport()) or proto[-1], "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        client = socket.create_connection(("127.0.0.1", port))
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)  # slow enough to fill the socket

        def read() -> None:
            said = False
            while len(got) < len(data):
                if len(got) > MiB and not said:  # (the client has read 1 MiB of 16)
                    client.sendall(b"sent while the body was going out")  # reading is paused: kept for later
                    said = True
                chunk = client.recv(256 * 1024)
                if not chunk:
                    return
                got.extend(chunk)

        reader = threading.Thread(target=read)
        reader.start()
        while not proto:
            await asyncio.sleep(0.01)
        await proto[0].ready
        transport = proto[0].transport
        assert transport is not None
        sock = transport.get_extra_info("socket")
        before = socket_state(sock)
        fd = os.open(blob, os.O_RDONLY)
        try:
            assert await sendfile_body(transport, fd, 0, len(data), stall_timeout=10) is True
            assert all(state == before for state in proto[0].states)  # nothing was read while it was set up for the body
        finally:
            os.close(fd)
        assert socket_state(sock) == before  # non-blocking, uncorked, no send timeout: as the transport had it
        assert before[0] is True and before[1] == 0
        assert transport.is_reading()
        await asyncio.to_thread(reader.join, 10)
        for _ in range(100):  # what the client sent meanwhile arrives once reading resumes
            if proto[0].received:
                break
            await asyncio.sleep(0.01)
        assert proto[0].received == b"sent while the body was going out"
        assert proto[0].states and all(state == before for state in proto[0].states)
        client.close()
        transport.close()
        server.close()

    if loop_kind == "uvloop":
        uvloop.run(main())
    else:
        asyncio.run(main())
    assert bytes(got) == data


def test_a_request_sent_during_a_big_body_is_answered_after_it(tmp_path: Path) -> None:
    cache = tmp_path / "c"
    import_demo(cache)
    src = tmp_path / "big"
    src.mkdir()
    big = os.urandom(8 * MiB + 5)
    (src / "weights.safetensors").write_bytes(big)
    (src / "config.json").write_text("{}")
    import_folder(RepoLayout(cache, "model", "org/big"), src, revision="main")
    config = (DEMO_MODEL / "config.json").read_bytes()
    with live_server(cache) as url:
        port = int(url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(b"GET /org/big/resolve/main/weights.safetensors HTTP/1.1\r\nHost: x\r\n\r\n")
            buf = b""
            while len(buf) < 2 * MiB:
                chunk = sock.recv(65536)
                assert chunk
                buf += chunk
            sock.sendall(f"GET /{DEMO_REPO}/resolve/main/config.json HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            head, _, body = buf.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200")
            while len(body) < len(big) + len(config):
                chunk = sock.recv(1 << 20)
                if not chunk:
                    break
                body += chunk
                if b"\r\n\r\n" in body[len(big):] and body[len(big):].partition(b"\r\n\r\n")[2] == config:
                    break
            assert body[: len(big)] == big
            second = body[len(big):]
            assert second.startswith(b"HTTP/1.1 200") and second.partition(b"\r\n\r\n")[2] == config
