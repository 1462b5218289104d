"""Many small GETs at once from one thread: non-blocking keep-alive connections and a selector.

Why: a small file costs one short request, so fetching many is latency-bound and wants many
connections at once. With a thread per connection (the engine's workers) every answer wakes a
thread that must take the GIL back and go through a queue: on 500 x 64 KiB at 20 ms latency,
13% of the process's CPU went to futex calls alone. Here one thread drives ``width``
connections through ``selectors`` and hands each whole body over in the same thread.

Scope, deliberately small: ``GET`` answered ``200`` with exactly the expected ``Content-Length``
(no chunked body), keep-alive, redirects followed (http/https only; the caller's ``headers``
decides per URL what is sent — the token only to the endpoint), TLS through ``ssl``. Anything
else — an error status, a dropped connection, a timeout, a body of the wrong length — is handed
back through ``fallback`` to the caller's threaded path, which knows errors, retries and backoff.
A server that closed an idle keep-alive connection is retried once on a fresh one, as ``RawPool``
does.
"""

from __future__ import annotations

import errno
import selectors
import socket
import ssl
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from urllib.parse import urljoin, urlsplit

from .rawhttp import MAX_HEADER, parse_head, request_for

__all__ = ["Failed", "Get", "SmallGets"]

MAX_REDIRECTS = 5
REDIRECT_BODY_MAX = 64 * 1024
"""A redirect's body up to this long is read and thrown away to keep the connection; longer: closed."""

_READ, _WRITE = selectors.EVENT_READ, selectors.EVENT_WRITE
_CONNECT, _HANDSHAKE, _SEND, _HEAD, _BODY = range(5)
_SCRATCH = 64 * 1024


@dataclass(eq=False)
class Get:
    """One GET: ``url`` must answer ``size`` bytes. ``tag`` is the caller's (a job)."""

    url: str
    size: int
    tag: object = None
    redirects: int = 0
    fresh_retry: bool = False  # retried once already after a stale keep-alive connection


@dataclass(frozen=True)
class Failed:
    """Why a get went to ``fallback``: ``status`` and ``headers`` (lower-case names) when the
    server answered (an error status: judge it from these, do not ask again), else 0 and {}."""

    why: str
    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)


def _origin(url: str) -> tuple[str, str, int] | None:
    """``(scheme, host, port)`` of an http(s) URL; None for any other, and for one that does not
    parse (a port out of range or not a number, an unclosed ``[``): a hostile redirect's
    ``Location`` must end its own get, not raise out of the loop and drop every other get."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    return parts.scheme, parts.hostname, port or (443 if parts.scheme == "https" else 80)


def _spoke(conn: _Conn) -> bool:
    """Whether an idle connection has anything to read (bytes, an end, an error): a quiet one
    has nothing. The raw socket is peeked under TLS too (``SSLSocket.recv`` cannot peek)."""
    if conn.tls and conn.sock.pending():  # type: ignore[attr-defined]
        return True
    try:
        socket.socket.recv(conn.sock, 1, socket.MSG_PEEK)
    except (BlockingIOError, InterruptedError):
        return False
    except OSError:
        return True
    return True


class _Conn:
    __slots__ = ("key", "sock", "tls", "addr", "phase", "get", "out", "head", "body", "got", "want", "keep",
                 "answered", "deadline", "events", "redirect_to")

    def __init__(self, key: tuple[str, str, int], sock: socket.socket, tls: bool, addr: tuple) -> None:
        self.key = key
        self.sock = sock
        self.tls = tls
        self.addr = addr  # (from getaddrinfo)
        self.phase = _CONNECT
        self.get: Get | None = None
        self.out = memoryview(b"")
        self.head = bytearray()
        self.body: bytearray | None = None  # None while a redirect's body is skipped
        self.got = 0
        self.want = 0
        self.keep = False
        self.answered = 0  # responses read whole on this connection
        self.deadline = 0.0
        self.events = 0
        self.redirect_to: str | None = None


class SmallGets:
    """Runs batches of ``Get`` over at most ``width`` connections from the calling thread.

    ``headers(url)``: the extra request headers for ``url`` (``Authorization`` for the endpoint
    only), or None when this URL is not for this client (a proxied host): it goes to ``fallback``.
    ``tls()``: the context for https connections, asked for on the first one.
    """

    def __init__(self, *, width: int, timeout: float, headers: Callable[[str], dict[str, str] | None],
                 tls: Callable[[], ssl.SSLContext]) -> None:
        self.width = max(1, width)
        self.timeout = timeout
        self.headers = headers
        self.tls = tls
        self._addrs: dict[tuple[str, str, int], list[tuple]] = {}  # per origin, the one that answered first

    def run(self, gets: Iterable[Get], done: Callable[[Get, bytearray], None],
            fallback: Callable[[Get, Failed], None], stop: Callable[[], bool]) -> None:
        """Fetch every get; each ends in exactly one ``done(get, body)`` (``len(body) == get.size``)
        or ``fallback(get, failed)`` — unless ``stop()`` turns true first (the rest are dropped).
        Both callbacks run in this thread, between reads; what they raise stops the run and is raised here."""
        pending = deque(gets)
        sel = selectors.DefaultSelector()
        busy: set[_Conn] = set()
        idle: dict[tuple[str, str, int], list[_Conn]] = {}
        self._sel, self._busy, self._idle, self._pending = sel, busy, idle, pending
        self._done, self._fallback = done, fallback
        self._fresh: set[Get] = set()  # gets to retry on a new connection (an idle one was closed)
        self._connects: dict[Get, int] = {}  # addresses each get failed to connect to
        self._out: list[tuple[Get, bytearray | Failed]] = []  # answers for the callbacks, outside the I/O
        try:
            while pending or busy:
                if stop():
                    return
                self._assign()
                if not busy:
                    continue
                now = time.monotonic()
                wait = max(0.0, min(0.1, min(c.deadline for c in busy) - now))
                for key, _ev in sel.select(wait):
                    conn: _Conn = key.data
                    if conn in busy:
                        self._step(conn)
                now = time.monotonic()
                for conn in [c for c in busy if c.deadline < now]:
                    self._fail(conn, f"no progress for {self.timeout:g} s")
                self._hand_out()
        finally:
            for conn in list(busy) + [c for conns in idle.values() for c in conns]:
                conn.sock.close()
            sel.close()

    def _hand_out(self) -> None:
        out, self._out = self._out, []
        for get, result in out:
            if isinstance(result, Failed):
                self._fallback(get, result)
            else:
                self._done(get, result)

    # -- scheduling ---------------------------------------------------------------------------------
    def _count(self) -> int:
        return len(self._busy) + sum(len(v) for v in self._idle.values())

    def _assign(self) -> None:
        """Give pending gets to idle connections of their origin, or to new ones while under width."""
        pending = self._pending
        while pending:
            get = pending[0]
            key = _origin(get.url)
            if key is None:
                pending.popleft()
                self._fallback(get, Failed("not an http(s) URL, or one that does not parse"))
                continue
            extra = self.headers(get.url)
            if extra is None:
                pending.popleft()
                self._fallback(get, Failed("not for direct connections (a proxy?)"))
                continue
            fresh = get in self._fresh
            conn = None if fresh else self._take_idle(key)
            if conn is None:
                if self._count() >= self.width and not self._close_idle(key, own_too=fresh):
                    return  # every connection is busy: wait for one
                self._fresh.discard(get)
                pending.popleft()
                try:
                    conn = self._open(key)
                except OSError as exc:
                    addrs = self._addrs.get(key)
                    if not (addrs and self._next_address(key, addrs[0], get)):
                        self._fallback(get, Failed(f"cannot connect to {key[1]}:{key[2]}: {exc.strerror or exc}"))
                    continue
            else:
                pending.popleft()
            self._start(conn, get, extra)

    def _take_idle(self, key: tuple[str, str, int]) -> _Conn | None:
        """An idle connection to ``key`` that is still quiet. One the server spoke on meanwhile —
        closed it, or sent bytes nobody asked for (a ``408 Request Timeout`` before closing, as
        Apache does) — is closed: those bytes would be read as the next request's answer."""
        conns = self._idle.get(key)
        while conns:
            conn = conns.pop()
            if not _spoke(conn):
                return conn
            conn.sock.close()
        return None

    def _close_idle(self, key: tuple[str, str, int], own_too: bool) -> bool:
        """Make room for a new connection to ``key``: close an idle one of another origin, or (for
        a retry that must not reuse one) of ``key`` itself. False when none is idle."""
        for other, conns in self._idle.items():
            if other != key and conns:
                conns.pop().sock.close()
                return True
        conns = self._idle.get(key)
        if own_too and conns:
            conns.pop().sock.close()
            return True
        return False

    def _open(self, key: tuple[str, str, int]) -> _Conn:
        scheme, host, port = key
        addrs = self._addrs.get(key)
        if addrs is None:  # (a name lookup blocks: once per origin)
            addrs = self._addrs[key] = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            if not addrs:
                raise OSError(f"no address for {host}")
        addr = addrs[0]
        family, type_, proto, _canon, sockaddr = addr
        sock = socket.socket(family, type_, proto)
        try:
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if scheme == "https":
                sock = self.tls().wrap_socket(sock, server_hostname=host, do_handshake_on_connect=False)
            err = sock.connect_ex(sockaddr)
        except BaseException:
            sock.close()
            raise
        conn = _Conn(key, sock, scheme == "https", addr)
        if err not in (0, errno.EINPROGRESS, errno.EWOULDBLOCK):
            sock.close()
            raise OSError(err, "connect failed")
        return conn

    def _start(self, conn: _Conn, get: Get, extra: dict[str, str]) -> None:
        conn.get = get
        conn.out = memoryview(request_for(get.url, extra)[1])
        conn.head = bytearray()
        conn.body, conn.got, conn.want, conn.redirect_to = None, 0, 0, None
        if conn.phase != _CONNECT:
            conn.phase = _SEND
        conn.deadline = time.monotonic() + self.timeout
        self._busy.add(conn)
        self._watch(conn, _WRITE)

    def _watch(self, conn: _Conn, events: int) -> None:
        if conn.events == events:
            return
        if conn.events:
            self._sel.modify(conn.sock, events, conn)
        else:
            self._sel.register(conn.sock, events, conn)
        conn.events = events

    def _release(self, conn: _Conn, keep: bool) -> None:
        """The connection's answer is over: back to idle (unwatched) or closed."""
        self._busy.discard(conn)
        if conn.events:
            self._sel.unregister(conn.sock)
            conn.events = 0
        conn.get = None
        if keep:
            self._idle.setdefault(conn.key, []).append(conn)
        else:
            conn.sock.close()

    def _next_address(self, key: tuple[str, str, int], addr: tuple, get: Get) -> bool:
        """A connect to ``addr`` failed: it goes last for its origin (``localhost`` may be ::1 first
        while the server listens on 127.0.0.1 only), and the get goes back to try the next one —
        True — unless it has tried them all, as ``socket.create_connection`` would."""
        addrs = self._addrs.get(key, [])
        if addr in addrs:
            addrs.remove(addr)
            addrs.append(addr)
        tried = self._connects[get] = self._connects.get(get, 0) + 1
        if tried >= len(addrs):
            return False
        self._pending.appendleft(get)
        return True

    def _fail(self, conn: _Conn, why: str, status: int = 0, headers: dict[str, str] | None = None) -> None:
        get = conn.get
        stale = conn.answered > 0 and conn.phase in (_SEND, _HEAD) and not conn.head
        self._release(conn, keep=False)
        if get is None:
            return
        if conn.phase == _CONNECT and self._next_address(conn.key, conn.addr, get):
            return
        if stale and not get.fresh_retry:  # the server closed an idle connection: once more, fresh
            get.fresh_retry = True  # (on a new connection: the other idle ones were likely closed too)
            self._fresh.add(get)
            self._pending.appendleft(get)
            return
        self._out.append((get, Failed(why, status, headers or {})))

    # -- one connection's progress ------------------------------------------------------------------
    def _step(self, conn: _Conn) -> None:
        try:
            if conn.phase == _CONNECT:
                err = conn.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err:
                    raise OSError(err, "connect failed")
                conn.phase = _HANDSHAKE if conn.tls else _SEND
            if conn.phase == _HANDSHAKE:
                conn.sock.do_handshake()  # type: ignore[attr-defined]
                conn.phase = _SEND
            if conn.phase == _SEND:
                while conn.out:
                    n = conn.sock.send(conn.out)
                    conn.out = conn.out[n:]
                conn.phase = _HEAD
                conn.deadline = time.monotonic() + self.timeout
                self._watch(conn, _READ)
            while conn.get is not None and self._read(conn):
                pass
        except ssl.SSLWantReadError:
            self._watch(conn, _READ)
        except ssl.SSLWantWriteError:
            self._watch(conn, _WRITE)
        except (BlockingIOError, InterruptedError):
            pass
        except OSError as exc:
            self._fail(conn, f"connection error ({exc.strerror or exc})")

    def _read(self, conn: _Conn) -> bool:
        """One read; True when there may be more to read at once (TLS bytes already decrypted)."""
        if conn.phase == _HEAD:
            data = conn.sock.recv(65536)
            if not data:
                self._fail(conn, "the server closed the connection before answering")
                return False
            conn.head += data
            while conn.phase == _HEAD:  # (more than one head: informational 1xx answers first)
                end = conn.head.find(b"\r\n\r\n")
                if end < 0:
                    if len(conn.head) > MAX_HEADER:
                        self._fail(conn, "response headers too large")
                        return False
                    break
                head, rest = bytes(conn.head[:end]), bytes(conn.head[end + 4:])
                if not self._answer(conn, head):
                    return False
                if conn.phase == _HEAD:
                    conn.head = bytearray(rest)
                else:
                    self._take(conn, rest)
        else:
            if conn.body is not None:
                n = conn.sock.recv_into(memoryview(conn.body)[conn.got:])
                if n:
                    conn.got += n
            else:  # a redirect's body: read and thrown away
                n = len(conn.sock.recv(min(_SCRATCH, conn.want - conn.got)))
                conn.got += n
            if not n:
                self._fail(conn, f"the body ended at byte {conn.got} of {conn.want}")
                return False
            conn.deadline = time.monotonic() + self.timeout
        if conn.get is not None and conn.phase == _BODY and conn.got >= conn.want:
            self._complete(conn)
            return False
        return conn.tls and conn.get is not None and conn.sock.pending() > 0  # type: ignore[attr-defined]

    def _answer(self, conn: _Conn, head: bytes) -> bool:
        """Judge the status line and headers; False when the get left this connection. After an
        informational 1xx the connection stays in ``_HEAD``: the final answer is still to come."""
        get = conn.get
        assert get is not None
        try:
            version, status, headers = parse_head(head)
        except ValueError as exc:
            self._fail(conn, str(exc))
            return False
        if 100 <= status < 200 and status != 101:
            return True  # informational (100 Continue, a CDN's 103 Early Hints): the answer follows
        length_text = headers.get("content-length")
        try:
            length = int(length_text) if length_text is not None and not headers.get("transfer-encoding") else -1
        except ValueError:
            length = -1
        conn.keep = version == "HTTP/1.1" and headers.get("connection", "").lower() != "close"
        if status in (301, 302, 303, 307, 308) and "location" in headers:
            try:
                target = urljoin(get.url, headers["location"])
            except ValueError:  # (an unclosed "[": urlsplit raises)
                target = ""
            if get.redirects >= MAX_REDIRECTS or _origin(target) is None:
                self._fail(conn, "too many redirects, or one to a non-HTTP URL")  # (the caller's path says which)
                return False
            conn.redirect_to = target
            if not 0 <= length <= REDIRECT_BODY_MAX:
                conn.keep = False
                length = 0  # not read: the connection is closed after it
        elif status != 200:
            self._fail(conn, f"HTTP {status}", status, headers)
            return False
        elif length != get.size:
            self._fail(conn, f"the server announced {length_text!r} bytes, not {get.size}")
            return False
        else:
            conn.body = bytearray(length)
        conn.phase, conn.want, conn.got = _BODY, length, 0
        conn.deadline = time.monotonic() + self.timeout
        return True

    def _take(self, conn: _Conn, rest: bytes) -> None:
        """Bytes read past the head: the start of the body (more than the body: not kept alive)."""
        if len(rest) > conn.want:
            conn.keep, rest = False, rest[:conn.want]
        if conn.body is not None and rest:
            conn.body[:len(rest)] = rest
        conn.got = len(rest)

    def _complete(self, conn: _Conn) -> None:
        get, body, target = conn.get, conn.body, conn.redirect_to
        assert get is not None
        conn.answered += 1
        self._release(conn, keep=conn.keep)
        if target is not None:
            get.url, get.redirects = target, get.redirects + 1
            self._pending.appendleft(get)
            return
        assert body is not None
        self._out.append((get, body))
