#!/usr/bin/env python3
"""System CPU seconds to write N bytes into the page cache, per size of write (``pwrite``).

Why blob bytes go to disk in ``modelcache.diskwrite.STEP`` pieces (``benchmarks/README.md``,
"Blob bytes written in 256 KiB pieces"): on a kernel whose file system uses large folios, a
write of 1 MiB or more asks for 1-2 MiB folios, which on some machines (a VM whose host takes
freed memory back) cost many times the CPU of smaller ones.

    python benchmarks/write_sizes.py [--dir DIR] [--mib 2048] [--rounds 3] [--sizes 2048,1024,512,256,128]

Each round writes ``--mib`` MiB once per size (sizes in KiB, in turn), from one thread into a
new file in ``--dir`` (default: ``benchmarks/_work``, on the disk the benchmarks use), then
``sync``s and deletes it. Prints the system seconds of every write pass.
"""

from __future__ import annotations

import argparse
import os
import resource
import time
from pathlib import Path

KiB, MiB = 1024, 1 << 20


def write_pass(path: Path, total: int, size: int) -> tuple[float, float]:
    """(wall, system) seconds to write ``total`` bytes in ``size``-byte ``pwrite``s."""
    buf = memoryview(bytearray(os.urandom(size)))
    fd = os.open(path, os.O_CREAT | os.O_TRUNC | os.O_WRONLY, 0o600)
    try:
        r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.monotonic()
        pos = 0
        while pos < total:
            pos += os.pwrite(fd, buf[: min(size, total - pos)], pos)
        r1 = resource.getrusage(resource.RUSAGE_SELF)
        return time.monotonic() - t0, r1.ru_stime - r0.ru_stime
    finally:
        os.close(fd)
        os.sync()
        path.unlink()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dir", type=Path, default=Path(__file__).resolve().parent / "_work")
    ap.add_argument("--mib", type=int, default=2048)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--sizes", default="2048,1024,512,256,128", help="write sizes in KiB")
    args = ap.parse_args()
    sizes = [int(s) * KiB for s in args.sizes.split(",")]
    args.dir.mkdir(parents=True, exist_ok=True)
    path = args.dir / f"write-sizes.{os.getpid()}"
    results: dict[int, list[float]] = {s: [] for s in sizes}
    for r in range(args.rounds):
        for size in sizes:
            wall, sys_s = write_pass(path, args.mib * MiB, size)
            results[size].append(sys_s)
            print(f"round {r + 1}: {size // KiB:5d} KiB writes: wall {wall:5.2f} s, sys {sys_s:5.2f} s", flush=True)
    print(f"\n{args.mib} MiB per pass; sys seconds, min-max over {args.rounds} rounds:")
    for size, xs in results.items():
        print(f"  {size // KiB:5d} KiB  {min(xs):5.2f}-{max(xs):5.2f}")


if __name__ == "__main__":
    main()
