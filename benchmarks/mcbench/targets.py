"""Targets judged on measured figures — pure functions, no I/O.

:func:`issue16_targets` judges the default ``modelcache`` against issue #16's table, each as a
ratio measured in the same run as its reference (nginx, aria2c, huggingface_hub, the cap, the
machine's sha256 cost, one direct download). :func:`scenario_targets` judges every modelcache
variant of one download scenario (the per-scenario tables of ``RESULTS.md``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from .common import MB, KiB, MiB
from .scenarios import Scenario


def mirror_cpu_floor(m: dict[str, Any], r: dict[str, Any]) -> float | None:
    """(mirror CPU + clients' CPU) / cores of one round: the shortest wall this box allows."""
    try:
        return (float(r["mirror_cpu_s"]) + float(r["clients_cpu_s"])) / max(1, int(m.get("cores") or 1))
    except (KeyError, TypeError, ValueError):
        return None

__all__ = ["RSS_LIMIT_BYTES", "Target", "issue16_targets", "mirror_cpu_floor", "scenario_targets"]

RSS_LIMIT_BYTES = 300 * MB
Summary = dict[str, dict[str, Any]]  # tool -> summarize() output


@dataclass(frozen=True)
class Target:
    """One target: ``ratio`` compared with ``threshold`` (``op`` is ``>=`` or ``<=``)."""

    work: str
    goal: str
    op: str
    threshold: float
    ratio: float | None
    figure: str

    @property
    def verdict(self) -> str:
        if self.ratio is None:
            return "n/a"
        ok = self.ratio >= self.threshold if self.op == ">=" else self.ratio <= self.threshold
        return "met" if ok else "missed"

    def as_dict(self) -> dict[str, object]:
        return {**asdict(self), "verdict": self.verdict}


def _wall(res: Summary | None, tool: str) -> float | None:
    r = (res or {}).get(tool)
    return r.get("wall_s") if r and r.get("ok") else None


def _cpu(res: Summary | None, tool: str) -> float | None:
    r = (res or {}).get(tool)
    return r.get("cpu_s") if r and r.get("ok") else None


def _missing(work: str, goal: str, op: str, threshold: float, why: str) -> Target:
    return Target(work, goal, op, threshold, None, why)


def issue16_targets(downloads: dict[int, Summary], scenarios: dict[int, Scenario], serve: dict[str, Any] | None,
                    mirror: dict[str, Any] | None, sha256_cpu_per_gb: float | None) -> list[Target]:
    """Issue #16's table, judged for the default ``modelcache`` on this run's figures.

    ``downloads``: scenario number -> tool -> summary; ``serve``: :func:`mcbench.serving.run_serve`'s
    result; ``mirror``: :func:`mcbench.mirror.run_mirror`'s; ``sha256_cpu_per_gb``: CPU seconds
    per GB of sha256 on this machine. A scenario that did not run gives ``n/a`` rows.
    """
    out: list[Target] = []
    # serving, big and small
    shard = (serve or {}).get("shard_bytes", 256 * MiB)
    w_big = f"serve 4 × {shard / MiB:,.0f} MiB blobs, {(serve or {}).get('connections', 32)} wrk connections"
    w_small = "serve small cached files (HEAD+GET)"
    servers = {s["server"]: s for s in (serve or {}).get("servers", [])}
    nginx = servers.get("nginx")
    mcs = [s for name, s in servers.items() if name.startswith("modelcache")]
    if nginx and mcs and nginx["big"]["bytes_per_s"] > 0 and nginx["small"]["requests_per_s"] > 0:
        best = max(mcs, key=lambda s: s["big"]["bytes_per_s"])
        r = best["big"]["bytes_per_s"] / nginx["big"]["bytes_per_s"]
        out.append(Target(w_big, "≥ 1.0× nginx (bytes/s)", ">=", 1.0, r,
                          f"{best['server']} {best['big']['bytes_per_s'] / MB:,.0f} MB/s vs nginx "
                          f"{nginx['big']['bytes_per_s'] / MB:,.0f} MB/s"))
        best = max(mcs, key=lambda s: s["small"]["requests_per_s"])
        rps, nrps = best["small"]["requests_per_s"], nginx["small"]["requests_per_s"]
        out.append(Target(w_small, "≥ 0.15× nginx (req/s)", ">=", 0.15, rps / nrps,
                          f"{best['server']} {rps:,.0f} req/s vs nginx {nrps:,.0f} req/s"))
        out.append(Target(w_small, "≥ 10,000 req/s", ">=", 1.0, rps / 10_000, f"{rps:,.0f} req/s"))
    else:
        why = ("serve scenario did not run" if not serve else
               str(serve.get("error") or "nginx or modelcache serve missing, or nginx measured nothing"))[:200]
        out += [_missing(w_big, "≥ 1.0× nginx (bytes/s)", ">=", 1.0, why),
                _missing(w_small, "≥ 0.15× nginx (req/s)", ">=", 0.15, why),
                _missing(w_small, "≥ 10,000 req/s", ">=", 1.0, why)]
    # many small files
    res2, sc2 = downloads.get(2), scenarios.get(2)
    w2 = f"download {sc2.n_files} × 64 KiB, 20 ms latency" if sc2 else "download many small files, 20 ms latency"
    mw, aw, hw = _wall(res2, "modelcache"), _wall(res2, "aria2c"), _wall(res2, "huggingface_hub")
    out.append(Target(w2, "wall ≤ 1.0× aria2c's", "<=", 1.0, mw / aw, f"modelcache {mw:.2f} s, aria2c {aw:.2f} s")
               if mw and aw else _missing(w2, "wall ≤ 1.0× aria2c's", "<=", 1.0, "did not run or failed"))
    out.append(Target(w2, "≥ 3× huggingface_hub's speed", ">=", 3.0, hw / mw,
                      f"huggingface_hub {hw:.2f} s, modelcache {mw:.2f} s")
               if mw and hw else _missing(w2, "≥ 3× huggingface_hub's speed", ">=", 3.0, "did not run or failed"))
    # capped connections
    res4, sc4 = downloads.get(4), scenarios.get(4)
    w4 = (f"download {len(sc4.files)} × {sc4.files[0][1] / MiB:,.0f} MiB, 10 MB/s per connection, 80 MB/s cap"
          if sc4 else "download 2 × 128 MiB, 10 MB/s per connection, 80 MB/s cap")
    mw = _wall(res4, "modelcache")
    if mw and sc4:
        tp = sc4.total_bytes / mw
        out.append(Target(w4, "≥ 0.9 of the cap", ">=", 0.9, tp / sc4.aggregate_bps,
                          f"{tp / MB:,.1f} MB/s of {sc4.aggregate_bps / MB:,.0f} MB/s"))
    else:
        out.append(_missing(w4, "≥ 0.9 of the cap", ">=", 0.9, "did not run or failed"))
    # CPU per verified GB
    res1, sc1 = downloads.get(1), scenarios.get(1)
    w5 = "CPU-s per verified GB (big shards)"
    mc, ac = _cpu(res1, "modelcache"), _cpu(res1, "aria2c")
    gb = sc1.total_bytes / 1e9 if sc1 else 0.0
    budget = 0.0
    if mc is not None and ac is not None and gb and sha256_cpu_per_gb is not None:
        budget = ac / gb + sha256_cpu_per_gb
    if mc is not None and ac is not None and sha256_cpu_per_gb is not None and budget > 0:
        out.append(Target(w5, "≤ aria2c + sha256 cost", "<=", 1.0, (mc / gb) / budget,
                          f"modelcache {mc / gb:.2f} vs aria2c {ac / gb:.2f} + sha256 {sha256_cpu_per_gb:.2f} "
                          f"= {budget:.2f} CPU-s/GB"))
    else:
        out.append(_missing(w5, "≤ aria2c + sha256 cost", "<=", 1.0,
                            "needs scenario 1 (modelcache and aria2c) and the sha256 cost of this run"))
    # cold mirror
    w6 = f"cold mirror, {(mirror or {}).get('clients', 16)} clients ask one uncached model"
    if mirror and mirror.get("ok") and mirror.get("direct_wall_s"):
        r = mirror["last_done_s"] / mirror["direct_wall_s"]
        rnd = next((x for x in mirror.get("rounds", []) if x.get("client") == "modelcache"), {})
        floor = mirror_cpu_floor(mirror, rnd)
        note = (f"; this box's CPU floor {floor:.2f} s = {floor / mirror['direct_wall_s']:.2f}× direct"
                if floor else "")
        cheap = next((x for x in mirror.get("rounds", []) if x.get("client") == "curl → /dev/null"
                      and x.get("ok")), None)
        if cheap:
            note += (f"; clients that write nothing (curl → /dev/null): last done {cheap['last_done_s']:.2f} s = "
                     f"{cheap['last_done_s'] / mirror['direct_wall_s']:.2f}× direct")
        out.append(Target(w6, "last done ≤ 1.1× one direct download", "<=", 1.1, r,
                          f"last client {mirror['last_done_s']:.2f} s, direct {mirror['direct_wall_s']:.2f} s{note}"))
    else:
        why = (mirror or {}).get("error") or "mirror scenario did not run"
        out.append(_missing(w6, "last done ≤ 1.1× one direct download", "<=", 1.1, str(why)[:200]))
    return out



def scenario_targets(num: int, res: Summary, sc: Scenario) -> list[tuple[str, str, str]]:
    """(target, verdict, detail) rows for one download scenario, judged for each modelcache variant."""
    rows: list[tuple[str, str, str]] = []

    def verdict(ok: bool | None) -> str:
        return "n/a" if ok is None else ("**met**" if ok else "**missed**")

    for mc in [t for t in sc.tools if t.startswith("modelcache")]:
        mw = _wall(res, mc)
        label = mc if mc != "modelcache" else "modelcache (default)"
        if mw is None:
            rows.append((f"{label}: completes", "**missed**", "; ".join(res.get(mc, {}).get("errors", []))[:300]))
            continue
        tp = sc.total_bytes / mw
        if num in (1, 4):
            cap = sc.aggregate_bps
            share = 0.9
            cap_s = f"{cap / 1e9:g} GB/s" if cap >= 1e9 else f"{cap / MB:,.0f} MB/s"
            rows.append((f"{label}: ≥ {share:.0%} of the {cap_s} cap", verdict(tp >= share * cap),
                         f"{tp / MB:,.0f} MB/s = {tp / cap:.0%} of cap"))
        if num == 1:
            hw = _wall(res, "huggingface_hub")
            rows.append((f"{label}: ≥ 3× huggingface_hub", verdict(None if hw is None else hw / mw >= 3),
                         "—" if hw is None else f"{hw / mw:.2f}×"))
            for group in (["aria2c"], ["hf_transfer", "hf_transfer x8 procs"]):
                walls = {t: w for t in group if (w := _wall(res, t)) is not None}
                if not walls:
                    rows.append((f"{label}: not slower than {group[0]}", "n/a", "did not complete"))
                    continue
                other = min(walls, key=lambda t: walls[t])
                ow = walls[other]
                rows.append((f"{label}: not slower than {group[0]} (fastest variant: {other})",
                             verdict(mw <= ow), f"{other} wall / modelcache wall = {ow / mw:.2f}"))
        elif num == 2:
            hw, aw = _wall(res, "huggingface_hub"), _wall(res, "aria2c")
            rows.append((f"{label}: ≥ 3× huggingface_hub", verdict(None if hw is None else hw / mw >= 3),
                         "—" if hw is None else f"{hw / mw:.2f}×"))
            rows.append((f"{label}: wall ≤ aria2c's", verdict(None if aw is None else mw <= aw),
                         "—" if aw is None else f"modelcache wall / aria2c wall = {mw / aw:.2f}"))
        elif num == 3:
            rows += _curl_rows(label, mc, mw, tp, res, sc, verdict)
        rss = res[mc].get("peak_rss_kib") or 0
        rows.append((f"{label}: peak RSS < 300 MB", verdict(rss * KiB < RSS_LIMIT_BYTES), f"{rss * KiB / MB:,.0f} MB"))
    return rows


def _curl_rows(label: str, mc: str, mw: float, tp: float, res: Summary, sc: Scenario,
               verdict: Any) -> list[tuple[str, str, str]]:
    rows: list[tuple[str, str, str]] = []
    curls = {t: w for t in sc.tools if t.startswith("curl") and (w := _wall(res, t))}
    if not curls:
        return [(f"{label}: ≥ 70% of raw curl", "n/a", "curl did not complete")]
    best_t = min(curls, key=lambda t: curls[t])
    for t in sorted(curls, key=lambda t: curls[t]):
        cw = curls[t]
        what = "the target: the faster curl" if t == best_t else "for information"
        rows.append((f"{label}: ≥ 70% of raw curl — {t} ({what})",
                     verdict(cw / mw >= 0.7) if t == best_t else ("(met)" if cw / mw >= 0.7 else "(missed)"),
                     f"{tp / MB:,.0f} MB/s vs {sc.total_bytes / cw / MB:,.0f} MB/s = {cw / mw:.0%}"))
    cs, ms = res[best_t].get("wall_plus_sync_s"), res[mc].get("wall_plus_sync_s")
    if cs and ms:
        rows.append((f"{label}: same, counting the final sync (data on disk) — {best_t}",
                     "(met)" if cs / ms >= 0.7 else "(missed)", f"wall+sync {ms:.2f} s vs {cs:.2f} s = {cs / ms:.0%}"))
    return rows
