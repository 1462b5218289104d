"""``RESULTS.md`` and the console summary, rendered from measured figures (pure: no I/O)."""

from __future__ import annotations

from typing import Any

from .common import MB, GiB, KiB, MiB
from .scenarios import CEILING, CEILING_RANGES, Scenario
from .targets import Target, mirror_cpu_floor, scenario_targets

__all__ = ["render_report", "render_serve", "render_targets", "targets_console"]


def _f(x: object, fmt: str = "{:.2f}") -> str:
    return "—" if x is None else fmt.format(x)


def _join(x: object) -> str:
    return ",".join(map(str, x)) if isinstance(x, (list, tuple)) else str(x)


def _ratio(t: Target) -> str:
    return "—" if t.ratio is None else f"{t.ratio:.2f}"


def render_targets(targets: list[Target]) -> list[str]:
    """The issue #16 table as Markdown lines."""
    out = ["| work | target | ratio | verdict | figures |", "|---|---|---:|---|---|"]
    for t in targets:
        v = t.verdict if t.verdict == "n/a" else f"**{t.verdict}**"
        out.append(f"| {t.work} | {t.goal} | {_ratio(t)} | {v} | {t.figure} |")
    return out


def targets_console(targets: list[Target]) -> str:
    """The issue #16 table as plain text for the terminal."""
    met = sum(t.verdict == "met" for t in targets)
    lines = [f"targets (issue #16): {met} of {len(targets)} met"]
    for t in targets:
        lines.append(f"  {t.verdict.upper():7s} {_ratio(t):>6s}  {t.work}: {t.goal} — {t.figure}")
    return "\n".join(lines)


def render_serve(serve: dict[str, Any]) -> list[str]:
    """The serving section: one row per server."""
    if serve.get("error"):
        return [f"Did not complete: `{serve['error']}`"]
    shard = serve.get("shard_bytes", 0)
    out = [f"4 shards × {shard / MiB:,.0f} MiB and a {serve.get('config_bytes', 0)}-byte config.json in one cache; "
           "modelcache through its `resolve` route, nginx (`sendfile on`, `worker_processes auto`) aliasing the "
           f"same URLs to the snapshot folder. Load: `wrk -t2 -c{serve.get('connections')} "
           f"-d{serve.get('duration_s'):g}s` on this machine (its CPU competes with the server's, equally for "
           "both): big = GETs of the shards in rotation (bytes/s); small = GETs of config.json (wrk) and "
           "HEADs (`ab -k -i`, wrk cannot time HEAD), the req/s of an even mix = 2 / (1/GET + 1/HEAD). "
           f"{serve.get('rounds', 1)} round(s), the servers taking turns, each started afresh; figures are "
           "each server's medians.\n",
           "| server | big files MB/s | small files req/s (HEAD+GET) | GET req/s | HEAD req/s | server CPU s "
           "| peak RSS MB | non-2xx |",
           "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in serve.get("servers", []):
        out.append(f"| {r['server']} | {r['big']['bytes_per_s'] / MB:,.0f} | {r['small']['requests_per_s']:,.0f} "
                   f"| {r['small'].get('get_requests_per_s', 0):,.0f} "
                   f"| {r['small'].get('head_requests_per_s', 0):,.0f} "
                   f"| {r['server_cpu_s']} | {r['rss_mb']} | {r['big']['non_2xx'] + r['small']['non_2xx']} |")
    if any(len(r.get("rounds", [])) > 1 for r in serve.get("servers", [])):
        out.append("")
        out.append("All rounds (big MB/s, small req/s): " + "; ".join(
            f"{r['server']} {[x['big_mb_s'] for x in r['rounds']]}, {[x['small_req_s'] for x in r['rounds']]}"
            for r in serve.get("servers", [])))
    return out


def _mirror_lines(m: dict[str, Any]) -> list[str]:
    if not m.get("direct_wall_s"):
        return [f"Did not complete: `{m.get('error', '?')}`"]
    direct = m["direct_wall_s"]
    out = [f"- one `modelcache download` straight from the upstream: {direct:.2f} s wall, "
           f"{m.get('direct_cpu_s', 0):.2f} CPU s", ""]
    out += ["| clients (each from a cold mirror) | last done s | / direct wall | failed clients | mirror CPU s "
            "| clients' CPU s | CPU floor s | floor / direct wall |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in m.get("rounds", []):
        last = r.get("last_done_s")
        who = {"modelcache": "`modelcache download`", "curl": "`curl -Z` into files (information)"}.get(
            r["client"], "`curl -Z` → /dev/null, bytes counted (information: no client disk writes)")
        floor = mirror_cpu_floor(m, r)
        out.append(f"| {m['clients']} × {who} "
                   f"| {_f(last)} | {_f(last / direct if last else None)} | {r.get('failed_clients', '—')} "
                   f"| {_f(r.get('mirror_cpu_s'))} | {_f(r.get('clients_cpu_s'))} "
                   f"| {_f(floor)} | {_f(floor / direct if floor else None)} |")
    out.append("")
    out.append(f"On this box all clients share its {m.get('cores', '?')} cores; on a cluster each has a node. "
               "**CPU floor** = (mirror CPU + clients' CPU) / cores: no schedule on this box finishes sooner, "
               "whatever the network does — when it exceeds 1.1× the direct wall, the target cannot be met here.")
    if m.get("upstream_bytes_per_round") is not None:
        n = m["upstream_bytes_per_round"]
        out.append(f"The upstream sent each cold mirror {n:,} bytes ({n / max(1, m['bytes']):.2f}× the model).")
    errors = [f"{r['client']}: {r['error']}" for r in m.get("rounds", []) if r.get("error")]
    if errors or (m.get("error") and not m.get("rounds")):
        out.append(f"Errors: `{'; '.join(errors) or m.get('error')}`")
    return out


def _machine(info: dict[str, Any], opts: dict[str, Any]) -> list[str]:
    v = info["versions"]
    return [
        "## Machine\n",
        f"- date: {info['date']}",
        f"- nproc: {info['nproc']} ({info['cpu']}), memory: {info['memory_gib']} GiB, kernel {info['kernel']}",
        f"- disk of the targets: `{info['filesystem']}`",
        f"- modelcache under test: git {info.get('modelcache_git')}, src fingerprint {info.get('modelcache_src_sha1')}"
        + (" — **CHANGED DURING THE RUN, see notes**" if info.get("modelcache_src_changed") else ""),
        f"- python {info['python']}; " + ", ".join(f"{k} {val}" for k, val in v.items()),
        f"- load average (1/5/15 min) at start: {info['loadavg_start']}, at end: {info.get('loadavg_end')}",
        f"- options: scenarios {_join(opts['scenarios'])}, scale {opts['scale']}, repeat {opts['repeat']}"
        + (" (**--quick**: a smoke run of the harness; figures are not comparable)" if opts.get("quick") else "")
        + " (figures are medians of the runs; peak RSS is the max)",
        f"- sha256 on this machine: {_f(info.get('sha256_cpu_s_per_gb'))} CPU-s per GB (hashlib, in memory)",
        f"- run took {info.get('elapsed_s', 0):.0f} s; runs repeated because another process used "
        f"> {opts['max_other_load']} core meanwhile: {info.get('noisy_retries', 0)} (the quietest attempt is kept)\n",
    ]


def _method(info: dict[str, Any]) -> list[str]:
    chunk = info.get("modelcache_default_chunk_size") or 0
    return [
        "## Method\n",
        "- Upstream: `benchmarks/upstream.py`, asyncio HTTP/1.1 keep-alive server in its own process, "
        "bodies sent with `sendfile` in pieces, token buckets per connection and shared by all "
        "connections, optional sleep before each answer. Source files are random bytes, read once "
        "before each scenario so they are served from the page cache.",
        "- Each tool: a subprocess under `/usr/bin/time -f '%e %U %S %M'` into a fresh empty folder "
        "on the same disk. **wall** = elapsed seconds of the tool; **CPU** = user+sys of the tool "
        "and its children; **RSS** = peak resident set (for multi-process runs: of the largest process); "
        "**throughput** = bytes of the repo / wall (1 MB = 10^6 bytes).",
        "- **wall+sync**: wall plus the `sync` run right after the tool. Only modelcache fsyncs each "
        "file before publishing it; the others leave dirty pages for the kernel. wall+sync puts all "
        "tools on the same footing (data durable on disk). Page cache is not dropped between runs "
        "(not safe/unprivileged here): `sync` only.",
        "- Output verified for every run: every file present (snapshot for modelcache / "
        "huggingface_hub), right size, 3 × 64 KiB samples (start, middle, end) equal to the source. "
        "A failed run is reported as failed, never as a time.",
        "- **upstream CPU**: CPU seconds of the upstream process during the tool's run; **other CPU**: "
        "CPU seconds (user+system, excluding irq/softirq and kernel threads such as writeback) used by "
        "other processes during the run — an interference check: another agent's test run on this "
        "2-core box shows up here.",
        f"- Tools: `modelcache` CLI (default settings, read from `modelcache.settings.Settings`: "
        f"{info.get('modelcache_default_connections')} connections, {chunk / MiB:g} MiB chunks; "
        "`-cN` = `--connections N`); "
        "`huggingface_hub.snapshot_download(repo, endpoint=, cache_dir=)` with `HF_HUB_DISABLE_XET=1` "
        "(plain HTTP, one stream per file, 8 files at a time); `hf_transfer.download(url, filename, "
        "max_files=100, chunk_size=10 MiB, parallel_failures=3, max_retries=5)` per file, 8 files at "
        "a time in threads, as huggingface_hub 0.x drove it (what it passed; no metadata calls, plain files, "
        "no HF cache layout) — `hf_transfer.download` holds the GIL, so these threads fetch one file at a "
        "time; `hf_transfer x8 procs` = the same calls in 8 processes (true file parallelism); "
        "`aria2c -x16 -s16 -j<files> -i urls.txt -d DIR --file-allocation=none` (plain files); "
        "`curl -s -o FILE URL` per file. "
        f"`{CEILING}` (scenario 1 only): every shard in {CEILING_RANGES} ranged curls, all at once, "
        "bodies thrown away — what the upstream and loopback deliver at these caps with no disk "
        "writes; a reference, not a contender (checked by byte count only).",
        "- **CPU-s per verified GB**: the tool's CPU seconds / GB of the repo (scenario 1); the budget is "
        "aria2c's (which verifies nothing) plus this machine's sha256 cost, both measured in this run.\n",
    ]


def _scenario(sc: Scenario, res: dict[str, dict[str, Any]], repeat: int) -> list[str]:
    out = [f"## Scenario {sc.num}: {sc.title}\n",
           f"{sc.description} Repo: {sc.n_files} files, {sc.total_bytes:,} bytes ({sc.total_bytes / GiB:.2f} GiB).\n"]
    base = res.get("modelcache", {})
    bw, bc = base.get("wall_s"), base.get("cpu_s")
    per_file = sc.n_files >= 50
    rate_col = "files/s" if per_file else "throughput MB/s"
    out.append(f"| tool | ok | wall s | wall+sync s | {rate_col} | CPU s (user+sys) | peak RSS MB "
               "| wall / modelcache wall | CPU / modelcache CPU | upstream CPU s | other CPU s |")
    out.append("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for t in sc.tools:
        r = res.get(t)
        if r is None:
            continue
        if not r.get("ok_runs"):
            out.append(f"| {t} | **FAILED** | — | — | — | — | — | — | — | — | — |")
            continue
        w, c = r["wall_s"], r["cpu_s"]
        rate = (sc.n_files / w) if per_file else (r["throughput_bps"] / MB)
        out.append(
            f"| {t} | {'yes' if r['ok'] else 'partly'} | {w:.2f} | {r['wall_plus_sync_s']:.2f} "
            f"| {rate:,.0f} | {c:.2f} ({r['user_s']:.2f}+{r['sys_s']:.2f}) "
            f"| {r['peak_rss_kib'] * KiB / MB:,.0f} "
            f"| {_f(w / bw if bw else None)} | {_f(c / bc if bc else None)} "
            f"| {r['upstream_cpu_s']:.2f} | {r['other_cpu_s']:.2f} |")
    errs = [(t, e) for t in sc.tools for e in res.get(t, {}).get("errors", [])]
    if errs:
        out.append("")
        out += [f"- {t} failed: `{e}`" for t, e in errs]
    if repeat > 1:
        out.append("")
        out.append("All walls (s): " + "; ".join(f"{t} {res[t].get('all_walls_s')}" for t in sc.tools if t in res))
    out += ["", "Targets:\n", "| target | verdict | figure |", "|---|---|---|"]
    out += [f"| {tgt} | {verdict} | {detail} |" for tgt, verdict, detail in scenario_targets(sc.num, res, sc)]
    out.append("")
    return out


def render_report(info: dict[str, Any], opts: dict[str, Any], scenarios: dict[int, Scenario],
                  results: dict[int, dict[str, dict[str, Any]]], targets: list[Target],
                  serve: dict[str, Any] | None = None, mirror: dict[str, Any] | None = None,
                  notes: list[str] | None = None) -> str:
    """The whole ``RESULTS.md``: machine, issue #16 targets, method, one section per scenario, notes."""
    L = ["# Benchmark results\n",
         "Generated by `make bench` (`benchmarks/run.py`); regenerated on every run — do not edit.\n"]
    L += _machine(info, opts)
    L += ["## Targets (issue #16)\n",
          "Each a ratio measured in this run against its reference, for modelcache with its defaults "
          "(serving: the better of `modelcache serve` and `--workers <cores>`).\n"]
    L += render_targets(targets) + [""]
    L += _method(info)
    for n in sorted(results):
        L += _scenario(scenarios[n], results[n], int(opts["repeat"]))
    if serve:
        L += ["## Scenario 5: serving, `modelcache serve` vs nginx\n", *render_serve(serve), ""]
    if mirror:
        L += [f"## Scenario 6: cold mirror, {mirror.get('clients')} clients at once\n",
              "Scenario 4's repo and caps behind the upstream; the mirror starts with an empty cache.\n",
              *_mirror_lines(mirror), ""]
    if notes:
        L += ["## Notes\n", *[f"- {n}" for n in notes], ""]
    return "\n".join(L)
