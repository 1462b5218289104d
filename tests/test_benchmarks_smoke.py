"""The benchmark harness imports, and its pure parts (targets, report, parsing) work on canned figures.

No servers, no subprocesses: the measuring itself is exercised by ``make bench BENCH_ARGS=--quick``.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"
sys.path.insert(0, str(BENCH))

from mcbench import (  # noqa: E402,F401
    common,
    machine,
    measure,
    mirror,
    peers,
    report,
    scenarios,
    serving,
    sourcerepo,
    targets,
)
from mcbench.scenarios import build_scenarios, modelcache_variants  # noqa: E402
from mcbench.targets import Target, issue16_targets, scenario_targets  # noqa: E402

from modelcache.settings import Settings  # noqa: E402

MB = 1_000_000


def _load(name: str):  # noqa: ANN202
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _ok(wall: float, cpu: float = 1.0, rss_kib: int = 50_000) -> dict[str, object]:
    return {"runs": 1, "ok_runs": 1, "ok": True, "errors": [], "wall_s": wall, "wall_plus_sync_s": wall,
            "cpu_s": cpu, "user_s": cpu / 2, "sys_s": cpu / 2, "peak_rss_kib": rss_kib, "throughput_bps": 1e8,
            "upstream_cpu_s": 0.1, "other_cpu_s": 0.0, "kernel_threads_cpu_s": 0.0, "all_walls_s": [wall]}


def _serve(nginx_big: float, mc_big: float, nginx_rps: float, mc_rps: float) -> dict[str, object]:
    def row(name: str, big: float, rps: float) -> dict[str, object]:
        return {"server": name, "big": {"bytes_per_s": big * MB, "requests_per_s": 10, "non_2xx": 0},
                "small": {"requests_per_s": rps, "get_requests_per_s": rps, "head_requests_per_s": rps,
                          "non_2xx": 0}, "rss_mb": 20.0, "server_cpu_s": 1.0}
    return {"servers": [row("nginx", nginx_big, nginx_rps), row("modelcache", mc_big, mc_rps),
                        row("modelcache --workers 2", mc_big / 2, mc_rps / 2)],
            "shard_bytes": 256 << 20, "config_bytes": 655, "duration_s": 10, "connections": 32, "cores": 2}


def _by_goal(ts: list[Target]) -> dict[str, Target]:
    return {t.goal: t for t in ts}


def test_every_module_imports_and_entry_points_load() -> None:
    run = _load("run")
    _load("serve_bench")
    sizes = _load("write_sizes")
    assert callable(sizes.main)
    up = _load("upstream")
    assert up.Repo is sourcerepo.Repo and callable(run.main)
    args = run.parse_args(["--quick"])
    assert args.quick and args.scale < 0.1 and args.repeat == 1 and args.noisy_retries == 0
    assert args.scenarios == "1,2,3,4,5,6"
    full = run.parse_args([])
    assert full.scale == 1.0 and full.serve_duration == 6
    assert run.outputs(True)[0].parent.name == "_work"  # a quick run never overwrites RESULTS.md


def test_write_sizes_writes_and_removes_its_file(tmp_path: Path) -> None:
    sizes = _load("write_sizes")
    wall, sys_s = sizes.write_pass(tmp_path / "f", 3 * 1024 * 1024 + 5, 256 * 1024)
    assert wall >= 0 and sys_s >= 0 and not (tmp_path / "f").exists()


def test_a_quick_run_fails_on_a_broken_part_not_on_a_missed_target() -> None:
    run = _load("run")
    good = {2: {"modelcache": _ok(9.0), "aria2c": _ok(1.0)}}  # a missed target is not a harness failure
    serve, mirror_ok = _serve(1, 1, 1, 1), {"rounds": [{"client": "modelcache", "ok": True}]}
    assert run.harness_failures(good, serve, mirror_ok, [2, 5, 6]) == []
    bad = {2: {"modelcache": {"ok": False, "ok_runs": 0, "errors": ["exit 1"]}}}
    problems = run.harness_failures(bad, {"error": "boom", "servers": []}, {"rounds": []}, [1, 2, 5, 6])
    assert problems == ["scenario 2: modelcache failed", "scenario 1 did not run", "scenario 5: boom",
                        "scenario 6: did not run"]


def test_defaults_come_from_settings() -> None:
    s = Settings(cache_dir=Path("."))
    assert common.modelcache_defaults() == {"connections": s.connections, "chunk_size": s.chunk_size}
    assert modelcache_variants((8, 32), default=16) == ["modelcache", "modelcache -c8", "modelcache -c32"]
    assert modelcache_variants(default=8) == ["modelcache", "modelcache -c16"]


def test_all_targets_met_on_good_figures() -> None:
    sc = build_scenarios(1.0)
    downloads = {
        1: {"modelcache": _ok(4.0, cpu=5.0), "aria2c": _ok(4.5, cpu=3.8)},
        2: {"modelcache": _ok(1.0), "aria2c": _ok(1.2), "huggingface_hub": _ok(3.5)},
        4: {"modelcache": _ok(sc[4].total_bytes / (76 * MB))},
    }
    mirror_res = {"ok": True, "clients": 16, "direct_wall_s": 3.0, "last_done_s": 3.2}
    ts = issue16_targets(downloads, sc, _serve(2000, 2100, 60_000, 12_000), mirror_res, 2.0)
    assert len(ts) == 8
    assert [t.verdict for t in ts] == ["met"] * 8, [(t.goal, t.ratio) for t in ts]
    g = _by_goal(ts)
    assert g["≥ 1.0× nginx (bytes/s)"].ratio == pytest.approx(1.05)
    assert g["wall ≤ 1.0× aria2c's"].ratio == pytest.approx(1 / 1.2)
    assert g["last done ≤ 1.1× one direct download"].ratio == pytest.approx(3.2 / 3.0)
    gb = sc[1].total_bytes / 1e9
    assert g["≤ aria2c + sha256 cost"].ratio == pytest.approx((5.0 / gb) / (3.8 / gb + 2.0))


def test_targets_missed_and_not_applicable() -> None:
    sc = build_scenarios(1.0)
    downloads = {2: {"modelcache": _ok(2.5), "aria2c": _ok(1.2), "huggingface_hub": _ok(3.8)}}
    ts = issue16_targets(downloads, sc, _serve(2760, 1890, 61_000, 1_300), None, None)
    g = _by_goal(ts)
    assert g["≥ 1.0× nginx (bytes/s)"].verdict == "missed"
    assert g["≥ 0.15× nginx (req/s)"].verdict == "missed"
    assert g["≥ 10,000 req/s"].verdict == "missed"
    assert g["wall ≤ 1.0× aria2c's"].verdict == "missed"
    assert g["≥ 3× huggingface_hub's speed"].ratio == pytest.approx(3.8 / 2.5)
    for goal in ("≥ 0.9 of the cap", "≤ aria2c + sha256 cost", "last done ≤ 1.1× one direct download"):
        assert g[goal].verdict == "n/a" and g[goal].ratio is None
    failed = {2: {"modelcache": {"runs": 1, "ok_runs": 0, "ok": False, "errors": ["exit 1"]}, "aria2c": _ok(1.0)}}
    assert _by_goal(issue16_targets(failed, sc, None, None, None))["wall ≤ 1.0× aria2c's"].verdict == "n/a"


def test_broken_figures_are_not_applicable_not_a_crash() -> None:
    sc = build_scenarios(1.0)
    zero_nginx = _serve(0, 1000, 0, 1000)  # wrk printed nothing we could parse
    broken_serve = {"error": "RuntimeError: nothing listens on 1234", "servers": []}
    free_aria = {1: {"modelcache": _ok(4.0, cpu=5.0), "aria2c": _ok(4.0, cpu=0.0)}}
    failed_mirror = {"error": "direct download failed: exit 1", "clients": 16, "rounds": []}
    for serve in (zero_nginx, broken_serve):
        g = _by_goal(issue16_targets(free_aria, sc, serve, failed_mirror, 0.0))
        assert g["≥ 1.0× nginx (bytes/s)"].verdict == "n/a"
        assert g["≤ aria2c + sha256 cost"].verdict == "n/a"  # a zero budget is no yardstick
        assert "direct download failed" in g["last done ≤ 1.1× one direct download"].figure
    assert report.render_serve(broken_serve) == ["Did not complete: `RuntimeError: nothing listens on 1234`"]
    assert "nothing listens" in _by_goal(issue16_targets({}, sc, broken_serve, None, None))[
        "≥ 1.0× nginx (bytes/s)"].figure


def test_report_renders_every_section() -> None:
    sc = build_scenarios(0.5)
    results = {n: {t: _ok(1.0 + i) for i, t in enumerate(sc[n].tools)} for n in (1, 2, 3, 4)}
    info = {"date": "d", "nproc": 2, "cpu": "c", "memory_gib": 1, "kernel": "k", "filesystem": "f", "python": "3",
            "versions": {"modelcache": "0"}, "loadavg_start": [0, 0, 0], "modelcache_default_connections": 16,
            "modelcache_default_chunk_size": Settings(cache_dir=Path(".")).chunk_size, "sha256_cpu_s_per_gb": 2.0}
    rounds = [{"client": "modelcache", "ok": True, "last_done_s": 9.0, "failed_clients": 0},
              {"client": "curl", "ok": True, "last_done_s": 4.0, "failed_clients": 0}]
    mirror_res = {"ok": True, "clients": 16, "direct_wall_s": 3.0, "last_done_s": 9.0, "bytes": 100, "cores": 2,
                  "upstream_bytes_per_round": 100, "rounds": rounds}
    serve = _serve(2000, 1000, 60_000, 1_000)
    ts = issue16_targets(results, sc, serve, mirror_res, 2.0)
    opts = {"scenarios": "1,2,3,4,5,6", "scale": 0.5, "repeat": 1, "quick": True, "max_other_load": 0.3}
    md = report.render_report(info, opts, sc, results, ts, serve, mirror_res, ["a note"])
    for part in ("## Targets (issue #16)", "## Scenario 1", "## Scenario 4", "## Scenario 5", "## Scenario 6",
                 "**missed**", "8 MiB chunks", "1.00× the model", "a note", "--quick"):
        assert part in md
    assert "16 MiB chunks" not in md
    console = report.targets_console(ts)
    assert console.splitlines()[0].startswith("targets (issue #16):") and "MISSED" in console
    rows = scenario_targets(3, results[3], sc[3])
    assert any("raw curl" in r[0] for r in rows)


def test_wrk_and_ab_parsing() -> None:
    out = "Requests/sec:  61385.20\nTransfer/sec:      2.57GB\nNon-2xx or 3xx responses: 3\n"
    assert serving.parse_wrk(out) == {"requests_per_s": 61385.2, "bytes_per_s": 2.57 * 1024**3, "non_2xx": 3}
    assert serving.parse_wrk("") == {"requests_per_s": 0.0, "bytes_per_s": 0.0, "non_2xx": 0}
    assert serving.mix_rate(1000, 1000) == pytest.approx(1000)
    assert serving.mix_rate(1000, 0) == 0.0
    lua = serving.wrk_script([("GET", "/a/resolve/main/x.json")])
    assert '{"GET", "/a/resolve/main/x.json"}' in lua


def test_serve_rounds_combine_to_medians() -> None:
    from mcbench.serving import combine_rounds

    rounds = [{"big": {"requests_per_s": 7, "bytes_per_s": b * MB, "non_2xx": n}, "rss_mb": rss,
               "small": {"requests_per_s": s, "get_requests_per_s": s, "head_requests_per_s": s, "non_2xx": 0},
               "server_cpu_s": c} for b, s, n, rss, c in [(2000, 30, 0, 40.0, 1.0), (1800, 10, 1, 55.0, 3.0),
                                                          (2200, 20, 0, 41.0, 2.0)]]
    got = combine_rounds("x", rounds)
    assert got["big"]["bytes_per_s"] == 2000 * MB and got["small"]["requests_per_s"] == 20
    assert got["big"]["non_2xx"] == 1 and got["rss_mb"] == 55.0 and got["server_cpu_s"] == 2.0
    assert [r["big_mb_s"] for r in got["rounds"]] == [2000, 1800, 2200]
