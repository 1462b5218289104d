#!/usr/bin/env python3
"""A throttled, Hugging Face-compatible upstream on loopback, for download benchmarks.

Serves ONE repo generated on disk (a folder of files) with the endpoints the HF clients use:

- ``GET /api/models/{repo}/revision/{rev}``  -> ``{"id", "sha", "siblings": [{"rfilename"}]}``
  (``?blobs=true`` adds ``size``, ``blobId``, ``lfs``)
- ``GET /api/models/{repo}/tree/{rev}[/{dir}]?recursive=true`` -> file/directory entries
  (paginated at 1000 entries with ``Link: <...>; rel="next"``)
- ``HEAD``/``GET /{repo}/resolve/{rev}/{path}`` -> ``ETag``, ``X-Repo-Commit``, ``X-Linked-Etag``,
  ``X-Linked-Size``, ``Content-Length``, ``Accept-Ranges``; ``Range: bytes=a-b | a- | -n`` -> 206.

The repo on disk (LFS or not, hashes, generation) is :mod:`mcbench.sourcerepo`, the server
:mod:`mcbench.hubserver`, the token buckets :mod:`mcbench.throttle`; this file runs them.

Bodies go out with ``loop.sendfile`` (``os.sendfile``) in pieces, so the server costs little CPU.
Throttling: a token bucket per TCP connection (``--per-conn-bps``) and one shared by all
connections (``--aggregate-bps``); ``--latency-ms`` sleeps before answering every request.

CLI::

    python benchmarks/upstream.py --root DIR --repo org/name --port P \
        --per-conn-bps N --aggregate-bps N --latency-ms N
    python benchmarks/upstream.py gen --root DIR --count 4 --size 536870912 --pattern 'model-{i:05d}.safetensors'

With ``--port 0`` a free port is chosen. Once listening, the server prints one JSON line on
stdout: ``{"url": ..., "port": ..., "commit": ...}``.

Importable: :func:`generate_repo`, :func:`start_subprocess` (preferred: the server's CPU is not
charged to the measured tool), :func:`serve_in_thread`, :class:`Upstream`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from mcbench.hubserver import PAGE_SIZE, Upstream, parse_range  # noqa: E402,F401  (re-exported)
from mcbench.sourcerepo import FileInfo, Repo, generate_repo, model_text_files  # noqa: E402
from mcbench.throttle import TokenBucket  # noqa: E402

__all__ = [
    "FileInfo",
    "Repo",
    "TokenBucket",
    "Upstream",
    "generate_repo",
    "model_text_files",
    "parse_range",
    "serve_in_thread",
    "start_subprocess",
]


# ------------------------------------------------------------------------------------------------
# Running it
# ------------------------------------------------------------------------------------------------
def _run(args: argparse.Namespace) -> None:
    repo = Repo(args.root, args.repo)
    up = Upstream(repo, per_conn_bps=args.per_conn_bps, aggregate_bps=args.aggregate_bps,
                  latency_ms=args.latency_ms, piece_size=args.piece_size or None)

    async def main() -> None:
        port = await up.start(args.host, args.port)
        print(json.dumps({"url": f"http://{args.host}:{port}", "port": port, "commit": repo.commit,
                          "repo": repo.repo_id, "files": len(repo.files), "pid": os.getpid()}), flush=True)
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        task = asyncio.ensure_future(up.serve_forever())
        await stop.wait()
        task.cancel()
        print(json.dumps({"requests": up.requests, "connections": up.connections, "bytes_sent": up.bytes_sent}),
              file=sys.stderr, flush=True)

    asyncio.run(main())


def start_subprocess(root: str | os.PathLike[str], repo_id: str, *, per_conn_bps: float = 0,
                     aggregate_bps: float = 0, latency_ms: float = 0, port: int = 0,
                     python: str = sys.executable, timeout: float = 600.0,
                     stderr: int | None = None) -> tuple[subprocess.Popen[str], dict[str, object]]:
    """Start the server as a subprocess; returns (process, ready-info with ``url``, ``commit``).

    The first start on a new repo hashes it (the sidecar makes later starts instant).
    """
    cmd = [python, str(Path(__file__).resolve()), "--root", str(root), "--repo", repo_id,
           "--port", str(port), "--per-conn-bps", str(int(per_conn_bps)),
           "--aggregate-bps", str(int(aggregate_bps)), "--latency-ms", str(latency_ms)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=stderr, text=True)
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    line = proc.stdout.readline()
    if not line or time.monotonic() > deadline:
        proc.kill()
        raise RuntimeError(f"upstream did not start (exit {proc.poll()})")
    return proc, json.loads(line)


def serve_in_thread(root: str | os.PathLike[str], repo_id: str, **kw: float) -> tuple[str, Upstream, threading.Thread]:
    """Start the server in a daemon thread of this process; returns (url, upstream, thread)."""
    repo = Repo(root, repo_id)
    up = Upstream(repo, **kw)  # type: ignore[arg-type]
    ready: dict[str, int] = {}
    ev = threading.Event()

    def target() -> None:
        async def main() -> None:
            ready["port"] = await up.start()
            ev.set()
            await up.serve_forever()

        asyncio.run(main())

    t = threading.Thread(target=target, name="bench-upstream", daemon=True)
    t.start()
    ev.wait(600)
    return f"http://127.0.0.1:{ready['port']}", up, t


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "gen":
        p = argparse.ArgumentParser(prog="upstream.py gen", description="generate a random-content repo")
        p.add_argument("--root", required=True)
        p.add_argument("--count", type=int, required=True)
        p.add_argument("--size", type=int, required=True, help="bytes per file")
        p.add_argument("--pattern", default="model-{i:05d}-of-{n:05d}.safetensors")
        p.add_argument("--model-files", action="store_true", help="add config.json, tokenizer.json, index")
        a = p.parse_args(argv[1:])
        names = [a.pattern.format(i=i + 1, n=a.count) for i in range(a.count)]
        text = model_text_files([n for n in names if n.endswith(".safetensors")]) if a.model_files else None
        generate_repo(a.root, [(n, a.size) for n in names], text_files=text)
        repo = Repo(a.root, "bench/gen")  # hashes now, into the sidecar
        print(json.dumps({"root": str(repo.root), "files": len(repo.files)}))
        return
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--root", required=True, help="folder holding the repo's files")
    p.add_argument("--repo", required=True, help="repo id, org/name")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="0 = any free port (printed on stdout)")
    p.add_argument("--per-conn-bps", type=float, default=0, help="bytes/s per TCP connection (0 = no cap)")
    p.add_argument("--aggregate-bps", type=float, default=0, help="bytes/s over all connections (0 = no cap)")
    p.add_argument("--latency-ms", type=float, default=0, help="sleep before answering each request")
    p.add_argument("--piece-size", type=int, default=0, help="sendfile piece size (default 512 KiB throttled, 8 MiB not)")
    _run(p.parse_args(argv))


if __name__ == "__main__":
    main()
