"""A FaultServer whose *API* answers misbehave too: 429/5xx/resets on a share of calls, a body
that trickles or never ends, a redirect to a non-HTTP scheme."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import ThreadingHTTPServer

from helpers.fault_server import FaultServer, Repo


class ApiFaultServer(FaultServer):
    def __init__(self, repo: Repo, **kw: object) -> None:
        super().__init__(repo, **kw)  # type: ignore[arg-type]
        self.rng = random.Random(1234)
        self.api_fault_rate = 0.0
        self.api_faults = (429, 503, "reset")
        self.api_calls = 0
        self.api_faulted = 0
        self.retry_after = "0"
        self.api_mode = ""  # "trickle", "endless", "redirect-file", "redirect-bad-port"
        self.stop = threading.Event()

    def handler(self) -> type:
        base = super().handler()
        srv = self

        class H(base):  # type: ignore[misc, valid-type]
            def do_GET(self) -> None:  # noqa: N802
                if not self.path.startswith("/api/models/"):
                    return super().do_GET()
                with srv._lock:
                    srv.api_calls += 1
                    fault = srv.rng.choice(srv.api_faults) if srv.rng.random() < srv.api_fault_rate else None
                    if fault is not None:
                        srv.api_faulted += 1
                if fault == "reset":
                    self.close_connection = True
                    self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n{\"sha")
                    return
                if fault is not None:
                    hdrs = {"Retry-After": srv.retry_after} if fault == 429 and srv.rng.random() < 0.5 else {}
                    return self._json(fault, {"error": "injected"}, hdrs)  # type: ignore[arg-type]
                if srv.api_mode == "stall":  # headers never come
                    srv.stop.wait(30)
                    return
                if srv.api_mode == "trickle":
                    self.send_response(200)
                    self.send_header("Content-Length", "100000")
                    self.end_headers()
                    while not srv.stop.is_set():
                        self.wfile.write(b" ")
                        self.wfile.flush()
                        time.sleep(0.2)
                    return
                if srv.api_mode == "endless":
                    self.send_response(200)
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    piece = b'{"type": "file", "path": "x", "size": 1},' * 1000
                    try:
                        self.wfile.write(b"%x\r\n[\r\n" % 1)
                        while not srv.stop.is_set():
                            self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                    except OSError:
                        pass
                    return
                if srv.api_mode in ("redirect-file", "redirect-bad-port"):
                    self.send_response(302)
                    self.send_header("Location", "file:///etc/passwd" if srv.api_mode == "redirect-file"
                                     else "http://127.0.0.1:99999/api/x")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                return super().do_GET()

        return H


@contextmanager
def api_fault_server(repo: Repo, **kw: object) -> Iterator[ApiFaultServer]:
    fs = ApiFaultServer(repo, **kw)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), fs.handler())
    httpd.daemon_threads = True
    fs.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    t = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    t.start()
    try:
        yield fs
    finally:
        fs.stop.set()
        httpd.shutdown()
        httpd.server_close()
