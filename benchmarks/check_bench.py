"""``modelcache check`` vs huggingface_hub's offline resolve, side by side (issue #12).

Builds a cache holding a model with ``--shards`` weight shards (an index naming every one),
then measures:

- in process: ``check_revision`` on that model (first call, then the median of warm calls);
- as a process: ``modelcache check REPO`` vs ``python -c "snapshot_download(REPO,
  local_files_only=True)"`` (what an init container or an engine's start-up pays), medians of
  runs interleaved with each other.

Run: ``.venv/bin/python benchmarks/check_bench.py [--shards 1000] [--repeat 7]``. Prints a
Markdown table and the ratios; nothing leaves the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = "bench/sharded"


def build(root: Path, shards: int) -> Path:
    from modelcache import ModelCache, Settings

    src = root / "src"
    src.mkdir()
    names = [f"model-{i:05d}-of-{shards:05d}.safetensors" for i in range(1, shards + 1)]
    for i, name in enumerate(names):
        (src / name).write_bytes(i.to_bytes(4, "little") * 8)
    (src / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {}, "weight_map": {f"layers.{i}.weight": n for i, n in enumerate(names)}}))
    (src / "config.json").write_text(json.dumps({"model_type": "llama", "num_hidden_layers": shards}))
    (src / "tokenizer.json").write_text(json.dumps({"version": "1.0", "model": {"type": "BPE", "vocab": {}}}))
    (src / "tokenizer_config.json").write_text("{}")
    cache = root / "hub"
    ModelCache(Settings(cache_dir=cache, offline=True)).import_folder(src, REPO)
    return cache


def in_process(cache: Path, repeat: int) -> tuple[float, float]:
    from modelcache.cache.layout import RepoLayout
    from modelcache.cache.readiness import check_revision

    layout = RepoLayout(cache, "model", REPO)
    t0 = time.perf_counter()
    assert check_revision(layout, "main", "full").ready
    first = time.perf_counter() - t0
    runs = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        assert check_revision(layout, "main", "full").ready
        runs.append(time.perf_counter() - t0)
    return first, statistics.median(runs)


def _once(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds: user + system of the child)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(argv, env=env, capture_output=True)
    took = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"{argv[:3]} failed: {proc.stderr.decode()[-500:]}")
    return took, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def side_by_side(commands: dict[str, list[str]], env: dict[str, str], repeat: int) -> dict[str, tuple[float, float]]:
    """Median (wall, CPU) seconds per command, the commands interleaved run by run (a shared
    machine's load changes from one second to the next; interleaving lets it hit every command
    alike; CPU time is what load disturbs least)."""
    runs: dict[str, list[tuple[float, float]]] = {name: [] for name in commands}
    for _ in range(repeat):
        for name, argv in commands.items():
            runs[name].append(_once(argv, env))
    return {name: (statistics.median(w for w, _ in times), statistics.median(c for _, c in times))
            for name, times in runs.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shards", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=7)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cache = build(Path(tmp), args.shards)
        first, warm = in_process(cache, args.repeat)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE"))}
        env.update(HF_HUB_CACHE=str(cache), HF_HUB_OFFLINE="1", HF_HUB_DISABLE_TELEMETRY="1")
        script = Path(sys.executable).with_name("modelcache")  # what an init container runs
        argv = [str(script)] if script.exists() else [sys.executable, "-m", "modelcache"]
        hf_code = f"from huggingface_hub import snapshot_download; snapshot_download({REPO!r}, local_files_only=True)"
        times = side_by_side({"ours": [*argv, "check", REPO], "theirs": [sys.executable, "-c", hf_code],
                              "bare": [sys.executable, "-c", "pass"]}, env, args.repeat)
        ours, theirs, bare = times["ours"], times["theirs"], times["bare"]
    print(f"| {args.shards}-shard model | wall | CPU |")
    print("|---|---|---|")
    print(f"| check in process, first call | {first * 1000:.1f} ms | |")
    print(f"| check in process, warm (median of {args.repeat}) | {warm * 1000:.1f} ms | |")
    for label, (wall, cpu) in (("`modelcache check` as a process", ours),
                               ("huggingface_hub offline `snapshot_download` as a process", theirs),
                               ("bare `python -c pass`", bare)):
        print(f"| {label} | {wall * 1000:.0f} ms | {cpu * 1000:.0f} ms |")
    print(f"\nratio modelcache/huggingface_hub as processes: wall {ours[0] / theirs[0]:.2f}, "
          f"CPU {ours[1] / theirs[1]:.2f} (target <= 0.5)")

if __name__ == "__main__":
    main()
