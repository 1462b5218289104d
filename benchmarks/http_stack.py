#!/usr/bin/env python3
"""Which HTTP stack for file bodies? One 1 GiB GET on loopback, per client, with and without
the work a verified download does (sha256 + pwrite into the page cache).

Candidates: httpx (64 KiB and 512 KiB reads), aiohttp, and modelcache's own socket client
(``modelcache.hub.rawhttp``). Prints MB/s and the client's CPU seconds; writes
``benchmarks/RESULTS-http-stack.md``.

    python benchmarks/http_stack.py [--size-mib 1024]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
WORK = HERE / "_work" / "http-stack"


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


class Sink:
    def __init__(self, verify: bool) -> None:
        self.h = hashlib.sha256() if verify else None
        self.fd = os.open(WORK / "out", os.O_WRONLY | os.O_CREAT | os.O_TRUNC) if verify else None
        self.n = 0

    def __call__(self, data: bytes | memoryview) -> None:
        if self.h is not None:
            self.h.update(data)
            os.pwrite(self.fd, data, self.n)  # type: ignore[arg-type]
        self.n += len(data)

    def close(self) -> int:
        if self.fd is not None:
            os.close(self.fd)
        return self.n


def httpx_client(url: str, sink: Sink, read_bytes: int) -> None:
    import httpcore
    import httpx

    httpcore._sync.http11.HTTP11Connection.READ_NUM_BYTES = read_bytes
    with httpx.Client(trust_env=False) as c, c.stream("GET", url) as r:
        for chunk in r.iter_raw():
            sink(chunk)


def aiohttp_client(url: str, sink: Sink) -> None:
    import aiohttp

    async def go() -> None:
        async with aiohttp.ClientSession() as s, s.get(url) as r:
            async for chunk in r.content.iter_chunked(1 << 20):
                sink(chunk)

    asyncio.run(go())


def raw_client(url: str, sink: Sink) -> None:
    from modelcache.hub.rawhttp import RawPool, iter_body

    pool = RawPool(timeout=30)
    buf = memoryview(bytearray(1 << 20))
    for view in iter_body(pool.get(url, {}), buf):
        sink(view)
    pool.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--repeat", type=int, default=3, help="runs per client and work; the median is reported")
    args = ap.parse_args(argv)
    sys.path.insert(0, str(HERE))

    WORK.mkdir(parents=True, exist_ok=True)
    root = WORK / f"repo-{args.size_mib}"
    if not (root / "big.safetensors").exists():
        root.mkdir(parents=True, exist_ok=True)
        with open(root / "big.safetensors", "wb") as fh:
            block = os.urandom(1 << 20)
            for i in range(args.size_mib):
                fh.write(bytes([i % 256]) + block[1:])
    proc = subprocess.Popen([sys.executable, str(HERE / "upstream.py"), "--root", str(root), "--repo", "org/big",
                             "--port", "0"], stdout=subprocess.PIPE, text=True)
    try:
        info = json.loads(proc.stdout.readline())  # type: ignore[union-attr]
        url = f"{info['url']}/org/big/resolve/main/big.safetensors"
        clients = [
            ("httpx, 64 KiB reads (its default)", lambda s: httpx_client(url, s, 64 * 1024)),
            ("httpx, 512 KiB reads", lambda s: httpx_client(url, s, 512 * 1024)),
            ("aiohttp, 1 MiB chunks", lambda s: aiohttp_client(url, s)),
            ("modelcache.hub.rawhttp, 1 MiB recv_into", lambda s: raw_client(url, s)),
        ]
        rows = []
        for name, fn in clients:
            for verify in (False, True):
                runs = []
                try:
                    for _ in range(args.repeat):
                        sink = Sink(verify)
                        t0, c0 = time.perf_counter(), _cpu()
                        fn(sink)
                        n = sink.close()
                        dt, dc = time.perf_counter() - t0, _cpu() - c0
                        runs.append((n / dt / 1e6, dc))
                except ImportError as exc:
                    rows.append((name, verify, None, None, f"not installed ({exc.name})"))
                    break
                mbs = sorted(r[0] for r in runs)[len(runs) // 2]
                cpu = sorted(r[1] for r in runs)[len(runs) // 2]
                rows.append((name, verify, mbs, cpu, ""))
                print(f"{name:42s} {'+sha256+pwrite' if verify else 'body only':15s} {mbs:7.0f} MB/s CPU {cpu:.2f} s")
    finally:
        proc.terminate()
        (WORK / "out").unlink(missing_ok=True)
    lines = ["# HTTP stack for file bodies", "",
             f"`benchmarks/http_stack.py`, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}: one "
             f"{args.size_mib} MiB GET from `benchmarks/upstream.py` (sendfile) on loopback, one connection; "
             f"CPU = the client process's user+sys seconds; medians of {args.repeat} runs.", "",
             "| client | work | MB/s | client CPU s |", "|---|---|---:|---:|"]
    for name, verify, mbs, cpu, note in rows:
        work = "sha256 + pwrite" if verify else "read the body"
        lines.append(f"| {name} | {work} | {mbs:.0f} | {cpu:.2f} |" if mbs else f"| {name} | {work} | {note} | |")
    (HERE / "RESULTS-http-stack.md").write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
