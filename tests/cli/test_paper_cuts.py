"""Section 3 of issue #12: what a new user hit, each a test."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from helpers.fault_server import Repo, fault_server

from modelcache import ModelCache, Settings
from modelcache.cache.requests import record_request
from modelcache.cli.main import cli
from modelcache.errors import InvalidInput

REPO = "modelcache/tiny-llama"


def run(*args: str, env: dict | None = None) -> tuple[int, str, str]:
    res = CliRunner().invoke(cli, list(args), obj={}, env=env or {}, catch_exceptions=False)
    return res.exit_code, res.stdout, res.stderr


@pytest.fixture
def cache(tmp_path: Path, demo_model: Path) -> Path:
    c = tmp_path / "cache"
    assert run("--cache-dir", str(c), "import", str(demo_model), "--repo", REPO)[0] == 0
    return c


def test_settings_take_str_and_pathlike(tmp_path: Path, demo_model: Path) -> None:
    s = Settings(cache_dir=str(tmp_path / "c"))
    assert s.cache_dir == tmp_path / "c"
    mc = ModelCache(s)
    mc.import_folder(str(demo_model), REPO)  # type: ignore[arg-type]
    assert mc.check(REPO)
    assert ModelCache(cache_dir=str(tmp_path / "c")).check(REPO)
    assert s.with_overrides(cache_dir=str(tmp_path / "d")).cache_dir == tmp_path / "d"
    from modelcache import TokenSource

    tok = tmp_path / "tok"
    tok.write_text("hf_x\n")
    assert TokenSource(path=str(tok)).file() == tok  # type: ignore[arg-type]
    mc.set_budget(10**9, root=str(tmp_path / "c"))  # type: ignore[arg-type]
    assert mc.usage(str(tmp_path / "c")).budget == 10**9  # type: ignore[arg-type]


def test_rm_and_pin_take_a_unique_commit_prefix(cache: Path, tmp_path: Path, demo_model: Path) -> None:
    code, out, _ = run("--cache-dir", str(cache), "ls", "--json")
    commit = json.loads(out)["repos"][0]["revisions"][0]["commit"]
    code, out, err = run("--cache-dir", str(cache), "pin", f"{REPO}@{commit[:12]}")
    assert code == 0 and commit in out, err
    code, out, _ = run("--cache-dir", str(cache), "ls")
    assert "pinned" in out
    run("--cache-dir", str(cache), "unpin", f"{REPO}@{commit[:7]}")
    code, out, err = run("--cache-dir", str(cache), "rm", f"{REPO}@{commit[:12]}", "--json")
    assert code == 0 and json.loads(out)["commits"] == [commit], err
    code, _, err = run("--cache-dir", str(cache), "rm", f"{REPO}@{commit[:6]}")
    assert code == 1 and "not in the cache" in err  # under 7 digits: not a prefix


def test_ambiguous_prefix_is_refused(tmp_path: Path) -> None:
    from modelcache.cache.layout import RepoLayout
    from modelcache.cache.readiness import resolve_commit

    lay = RepoLayout(tmp_path, "model", "org/m")
    for c in ("abcdef1" + "0" * 33, "abcdef1" + "1" * 33):
        lay.snapshot(c).mkdir(parents=True)
    with pytest.raises(InvalidInput):
        resolve_commit(lay, "abcdef1", prefix=True)
    assert resolve_commit(lay, "abcdef10", prefix=True) == "abcdef1" + "0" * 33
    assert resolve_commit(lay, "abcdef10") is None  # check and the server resolve as huggingface_hub does


def test_check_does_not_take_a_prefix(cache: Path) -> None:
    code, out, _ = run("--cache-dir", str(cache), "ls", "--json")
    commit = json.loads(out)["repos"][0]["revisions"][0]["commit"]
    assert run("--cache-dir", str(cache), "check", REPO, "--revision", commit)[0] == 0
    assert run("--cache-dir", str(cache), "check", REPO, "--revision", commit[:12])[0] == 1  # an engine could not


def test_verify_judges_each_revision_by_what_was_asked(tmp_path: Path, demo_model: Path) -> None:
    repo = Repo("org/m", {p.relative_to(demo_model).as_posix(): p.read_bytes()
                          for p in demo_model.rglob("*") if p.is_file()})
    with fault_server(repo) as srv:
        base = ["--cache-dir", str(tmp_path / "c"), "--endpoint", srv.url]
        assert run(*base, "download", "org/m", "--profile", "tokenizer", "--quiet")[0] == 0
    code, out, err = run("--cache-dir", str(tmp_path / "c"), "verify")
    assert code == 0 and ": ok" in out, out + err
    code, out, _ = run("--cache-dir", str(tmp_path / "c"), "verify", "--profile", "full")
    assert code == 1 and "missing" in out  # asked explicitly: every file of the commit


def test_gc_removes_empty_repo_folders(cache: Path) -> None:
    from modelcache.cache.usage import record_use

    mc = ModelCache(Settings(cache_dir=cache))
    layout = mc.layout(REPO)
    old = time.time() - 86400
    record_use(layout, mc.check(REPO, record=False).commit or "", old)
    os.utime(layout.folder, (old, old))
    code, out, err = run("--cache-dir", str(cache), "gc", "--max-age", "1h")
    assert code == 0 and "removed" in out and "1 empty repos" in out, out + err
    assert not layout.folder.exists()
    code, out, _ = run("--cache-dir", str(cache), "ls")
    assert "nothing cached" in out


def test_gc_keeps_a_fresh_or_leased_empty_repo(tmp_path: Path) -> None:
    from modelcache.cache.gc_extras import remove_empty_repos
    from modelcache.cache.layout import RepoLayout

    lay = RepoLayout(tmp_path, "model", "org/new")
    lay.snapshots.mkdir(parents=True)
    assert remove_empty_repos(tmp_path) == []  # just created: a download may be starting
    old = time.time() - 3600
    os.utime(lay.folder, (old, old))
    (lay.blobs).mkdir()
    (lay.blobs / ("a" * 64 + ".mc.incomplete")).write_bytes(b"x")
    assert remove_empty_repos(tmp_path) == []  # a partial download: resumable, not empty
    (lay.blobs / ("a" * 64 + ".mc.incomplete")).unlink()
    os.utime(lay.folder, (old, old))
    assert remove_empty_repos(tmp_path, dry_run=True) == ["org/new"] and lay.folder.exists()
    assert remove_empty_repos(tmp_path) == ["org/new"] and not lay.folder.exists()


def test_ls_says_what_was_asked(cache: Path) -> None:
    mc = ModelCache(Settings(cache_dir=cache))
    commit = mc.check(REPO).commit
    assert commit
    (mc.layout(REPO).snapshot(commit) / "README.md").unlink()
    record_request(mc.layout(REPO), commit, "full", (), ("README.md",))
    code, out, _ = run("--cache-dir", str(cache), "ls")
    assert "ready" in out and "full --exclude README.md" in out and "partial" not in out
    rev = json.loads(run("--cache-dir", str(cache), "ls", "--json")[1])["repos"][0]["revisions"][0]
    assert rev["state"] == "ready" and rev["asked"] == "full --exclude README.md" and rev["complete"]


def test_help_texts(tmp_path: Path) -> None:
    for group, subs in (("lease", ("acquire", "renew", "release", "ls")), ("quota", ("set", "show"))):
        code, out, _ = run(group, "--help")
        assert code == 0
        for sub in subs:
            line = next(ln for ln in out.splitlines() if ln.strip().startswith(sub + " "))
            assert len(line.split(None, 1)) == 2, f"{group} {sub} has no description"
    code, out, _ = run("check", "--help")
    text = " ".join(out.split())
    assert "--revision TEXT Branch, tag or commit" in text and "--include" in text and "--accept" in text


def test_offline_hint_names_the_flag_when_it_was_used(tmp_path: Path) -> None:
    code, _, err = run("--cache-dir", str(tmp_path), "--offline", "download", "org/x")
    assert code == 1 and "drop --offline" in err and "HF_HUB_OFFLINE" not in err
    code, _, err = run("--cache-dir", str(tmp_path), "download", "org/x", env={"HF_HUB_OFFLINE": "1"})
    assert code == 1 and "unset HF_HUB_OFFLINE" in err


def test_token_check_without_token_or_repo_warns(tmp_path: Path) -> None:
    with fault_server(Repo("org/m", {"config.json": b"{}"})) as srv:
        code, out, _ = run("--endpoint", srv.url, "token", "check", env={"HF_HOME": str(tmp_path / "h")})
    assert code == 0 and out.startswith("warn no token") and "public repos only" in out


def test_lease_release_by_id_alone(cache: Path) -> None:
    code, out, _ = run("--cache-dir", str(cache), "lease", "acquire", REPO, "--holder", "me")
    lease_id = out.strip()
    assert code == 0 and lease_id
    code, out, _ = run("--cache-dir", str(cache), "lease", "renew", lease_id, "--ttl", "2h")
    assert code == 0 and "renewed" in out
    code, out, _ = run("--cache-dir", str(cache), "lease", "release", lease_id)
    assert code == 0 and out.strip() == "released"
    code, out, _ = run("--cache-dir", str(cache), "lease", "release", lease_id)
    assert "no such lease" in out
    code, out, _ = run("--cache-dir", str(cache), "lease", "acquire", REPO)
    code, out, _ = run("--cache-dir", str(cache), "lease", "release", REPO, out.strip(), "--json")
    assert json.loads(out) == {"released": True}


def test_demo_json(tmp_path: Path) -> None:
    code, out, err = run("demo", "--workdir", str(tmp_path / "d"), "--json")
    assert code == 0 and json.loads(out)["ok"] is True and "[1]" in err


def test_every_reporting_command_takes_json() -> None:
    import click

    ctx = click.Context(cli)
    missing = []

    def walk(cmd: click.Command, path: list[str]) -> None:
        if isinstance(cmd, click.Group):
            for name in cmd.list_commands(ctx):
                walk(cmd.get_command(ctx, name), [*path, name])  # type: ignore[arg-type]
        elif "--json" not in {o for p in cmd.params for o in getattr(p, "opts", [])}:
            missing.append(" ".join(path))

    walk(cli, [])
    # `run` becomes the engine (its output is the engine's); `k8s render/apply` write manifests (README says so)
    assert sorted(missing) == ["k8s apply", "k8s render", "run"]


def test_serve_json_start_up_line(cache: Path) -> None:
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    proc = subprocess.Popen([sys.executable, "-m", "modelcache", "--cache-dir", str(cache), "serve", "--port", "0",
                             "--json"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, text=True)
    try:
        first = proc.stdout.readline()  # type: ignore[union-attr]
        data = json.loads(first)
        assert data["event"] == "serving" and data["cache_dir"] == str(cache)
    finally:
        proc.kill()
        proc.wait()


def test_offline_hint_names_the_flag_for_every_command(tmp_path: Path, demo_model: Path) -> None:
    code, _, err = run("--cache-dir", str(tmp_path / "c"), "--offline", "run", "org/x", "--", "true")
    assert code != 0 and "HF_HUB_OFFLINE" not in err, err
