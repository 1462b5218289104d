"""For tests of zero-copy bodies (``server/_blob.py``): a socket's sending set-up, and a protocol
that keeps its transport (the server side of a real TCP connection) for ``sendfile_body``."""

from __future__ import annotations

import asyncio
import fcntl
import os
import socket
import struct

__all__ = ["KeepTransport", "socket_state"]


def socket_state(sock: socket.socket) -> tuple[bool, int, bytes]:
    """(non-blocking, TCP_CORK, SO_SNDTIMEO): what the bulk send changes and must put back."""
    nonblocking = bool(fcntl.fcntl(sock.fileno(), fcntl.F_GETFL) & os.O_NONBLOCK)
    return (nonblocking, sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_CORK),
            sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, struct.calcsize("@ll")))


class KeepTransport(asyncio.Protocol):
    """Keeps its transport (``ready`` once connected) and what it received, with the socket's
    state at every receipt."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.ready = asyncio.get_running_loop().create_future()
        self.received = b""
        self.states: list[tuple[bool, int, bytes]] = []  # the socket's, whenever something was received

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.ready.set_result(None)

    def data_received(self, data: bytes) -> None:
        self.received += data
        assert self.transport is not None
        self.states.append(socket_state(self.transport.get_extra_info("socket")))
