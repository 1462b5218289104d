"""``modelcache sync`` end to end against a real HF-compatible endpoint on loopback."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from helpers.cli import run_cli
from helpers.live_server import import_demo, live_server

from modelcache import ModelCache, ModelManager, Settings
from modelcache.cache.usage import record_use

A, B = "org/alpha", "org/beta"


@pytest.fixture
def hub(tmp_path: Path):  # type: ignore[no-untyped-def]
    source = tmp_path / "source"
    commits = {r: import_demo(source, r).commit for r in (A, B, "org/gamma")}
    with live_server(source) as url:
        yield url, commits


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _sync(cache: Path, url: str, spec: Path, *extra: str) -> tuple[int, dict, str]:
    code, out, err = run_cli("--cache-dir", str(cache), "--endpoint", url, "sync", "-f", str(spec), "--json", *extra)
    return code, json.loads(out) if out.strip() else {}, err


def test_sync_downloads_pins_registers_then_does_nothing(tmp_path: Path, hub) -> None:  # type: ignore[no-untyped-def]
    url, commits = hub
    cache = tmp_path / "cache"
    spec = _write(tmp_path / "modelcache.yaml", f"models:\n  - repo: {A}\n    name: alpha\n  - repo: {B}\n"
                                                 "    profile: tokenizer\n  - repo: org/gamma\n"
                                                 "    exclude: [README.md]\n")
    code, dry, _ = _sync(cache, url, spec, "--dry-run")
    assert code == 0 and dry["dry_run"] and not (cache / "models--org--alpha").exists()
    assert [s["action"] for s in dry["steps"]] == ["download", "pin", "register", "download", "pin", "download", "pin"]

    code, res, err = _sync(cache, url, spec)
    assert code == 0 and res["ok"], err
    mc = ModelCache(Settings(cache_dir=cache, offline=True))
    assert mc.check(A).ready and mc.check(B, profile="tokenizer").ready
    assert mc.is_pinned(A) and mc.is_pinned(B)
    assert ModelManager(mc).get("alpha").commit == commits[A]

    code, again, _ = _sync(cache, url, spec)  # idempotent: says so, changes nothing
    assert code == 0 and again["changes"] == 0
    assert {s["action"] for s in again["steps"]} == {"ok"}
    code, out, err = run_cli("--cache-dir", str(cache), "--endpoint", url, "sync", "-f", str(spec))
    assert code == 0 and "nothing to do" in err


def test_dropping_a_model_unpins_and_unregisters_only_what_sync_did(tmp_path: Path, hub) -> None:  # type: ignore[no-untyped-def]
    url, commits = hub
    cache = tmp_path / "cache"
    both = _write(tmp_path / "both.yaml", f"models:\n  - repo: {A}\n  - repo: {B}\n    name: beta\n")
    assert _sync(cache, url, both)[0] == 0
    mc = ModelCache(Settings(cache_dir=cache, offline=True))
    only_a = _write(tmp_path / "a.yaml", f"models:\n  - repo: {A}\n")
    code, res, err = _sync(cache, url, only_a)
    assert code == 0, err
    assert {(s["action"], s["target"]) for s in res["steps"] if s["action"] != "ok"} == {
        ("unpin", f"{B}@{commits[B][:12]}"), ("unregister", "beta (default)")}
    assert mc.is_pinned(A) and not mc.is_pinned(B)
    assert [m.name for m in ModelManager(mc).list()] == []


def test_hand_made_pins_survive_and_gc_policy_applies(tmp_path: Path, hub) -> None:  # type: ignore[no-untyped-def]
    url, commits = hub
    cache = tmp_path / "cache"
    mc = ModelCache(Settings(cache_dir=cache, endpoint=url))
    mc.download(B)
    mc.download(A, profile="tokenizer")
    mc.pin(A)  # by hand: sync never undoes it
    old = time.time() - 90 * 86400
    for repo in (A, B):
        record_use(mc.layout(repo), commits[repo], now=old)
    spec = _write(tmp_path / "m.yaml", f"policy:\n  max_age: 30d\nmodels:\n  - repo: {A}\n    profile: tokenizer\n")
    code, res, err = _sync(cache, url, spec)
    assert code == 0, err
    assert any(s["action"] == "gc" for s in res["steps"])
    mc2 = ModelCache(Settings(cache_dir=cache, offline=True))
    assert mc2.check(A, profile="tokenizer").ready and mc2.is_pinned(A)
    assert not mc2.check(B).ready  # unpinned, unused for 90 days: collected by the policy
    none = _write(tmp_path / "none.yaml", "models: []\n")
    assert _sync(cache, url, none)[0] == 0
    assert mc2.is_pinned(A)  # the hand-made pin is not sync's to undo


def test_one_failing_model_does_not_stop_the_others(tmp_path: Path, hub) -> None:  # type: ignore[no-untyped-def]
    url, commits = hub
    cache = tmp_path / "cache"
    spec = _write(tmp_path / "m.yaml", f"models:\n  - repo: org/absent\n  - repo: {A}\n")
    code, res, err = _sync(cache, url, spec)
    assert code == 3  # the endpoint said "not found", as for `download`
    failed = [o for o in res["outcomes"] if not o["ok"]]
    assert [o["target"] for o in failed] == ["org/absent@main"]
    assert ModelCache(Settings(cache_dir=cache, offline=True)).check(A).ready


def test_a_bad_file_is_one_line_with_its_line_number(tmp_path: Path) -> None:
    spec = _write(tmp_path / "m.yaml", "models:\n  - repo: org/a\n    profile: all\n")
    code, out, err = run_cli("--cache-dir", str(tmp_path / "c"), "sync", "-f", str(spec))
    assert code == 2 and f"{spec}:3:" in err and "Traceback" not in err
    code, out, err = run_cli("sync", "--schema")
    assert code == 0 and json.loads(out)["title"] == "modelcache.yaml"
