"""The CLI as users run it: exit codes, one-line errors with hints, --json everywhere."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from helpers.fault_server import Repo, fault_server

from modelcache.cli.main import cli

REPO = "modelcache/tiny-llama"


def run(*args: str, env: dict | None = None) -> tuple[int, str, str]:
    runner = CliRunner()
    res = runner.invoke(cli, list(args), obj={}, env=env or {}, catch_exceptions=False)
    return res.exit_code, res.stdout, res.stderr


@pytest.fixture
def cache(tmp_path: Path, demo_model: Path) -> Path:
    c = tmp_path / "cache"
    code, out, err = run("--cache-dir", str(c), "import", str(demo_model), "--repo", REPO)
    assert code == 0, err
    assert out.strip().endswith(out.strip().split("/")[-1])
    return c


def test_import_check_ls_rm(cache: Path) -> None:
    code, out, _ = run("--cache-dir", str(cache), "check", REPO)
    assert code == 0 and "snapshots" in out
    code, out, _ = run("--cache-dir", str(cache), "check", REPO, "--profile", "tokenizer", "--json")
    data = json.loads(out)
    assert code == 0 and data["ready"] and data["profile"] == "tokenizer"
    code, out, _ = run("--cache-dir", str(cache), "ls")
    assert code == 0 and REPO in out and "complete" in out and "main" in out
    code, out, _ = run("--cache-dir", str(cache), "ls", "--json")
    rev = json.loads(out)["repos"][0]["revisions"][0]
    assert rev["complete"] and rev["refs"] == ["main"] and rev["files"] == rev["expected_files"] == 9
    assert rev["last_used"] is not None  # check records use
    code, out, _ = run("--cache-dir", str(cache), "rm", REPO, "--json")
    assert code == 0 and json.loads(out)["whole_repo"]
    code, out, err = run("--cache-dir", str(cache), "check", REPO)
    assert code == 1 and "not in the cache" in err


def test_check_env_cache_dir(cache: Path) -> None:
    code, _, _ = run("check", REPO, env={"HF_HUB_CACHE": str(cache)})
    assert code == 0
    code, _, _ = run("check", REPO, env={"HF_HOME": str(cache.parent / "elsewhere")})
    assert code == 1


def test_check_wait_times_out(tmp_path: Path) -> None:
    code, _, err = run("--cache-dir", str(tmp_path), "check", "org/none", "--wait", "0.3", "--interval", "0.1")
    assert code == 1 and "waiting" in err


@pytest.mark.parametrize("bad", ["../x", "a/b/c", "", "has space"])
def test_bad_repo_ids(tmp_path: Path, bad: str) -> None:
    for cmd in (["download", bad], ["check", bad], ["rm", bad]):
        code, _, err = run("--cache-dir", str(tmp_path), *cmd)
        assert code == 2, (cmd, err)
        assert err.startswith("error: invalid repo id") and "hint:" in err
    assert not any(tmp_path.iterdir())


def test_bad_revision(tmp_path: Path) -> None:
    code, _, err = run("--cache-dir", str(tmp_path), "download", "org/x", "--revision", "../../etc")
    assert code == 2 and "invalid revision" in err


def test_json_errors(tmp_path: Path) -> None:
    code, out, _ = run("--cache-dir", str(tmp_path), "download", "../x", "--json")
    assert code == 2 and json.loads(out)["error"] == "invalid-input"


def test_download_errors_from_upstream(tmp_path: Path) -> None:
    repo = Repo("org/m", {"config.json": b"{}", "tokenizer.json": b"{}"})
    with fault_server(repo) as srv:
        base = ["--cache-dir", str(tmp_path / "c"), "--endpoint", srv.url]
        code, _, err = run(*base, "download", "org/unknown")
        assert code == 3 and "not found" in err and "hint:" in err
        code, out, err = run(*base, "download", "org/m", "--json", "--quiet")
        assert code == 0, err
        data = json.loads(out)
        assert data["commit"] == repo.commit and data["files"] == 2
        code, out, _ = run(*base, "download", "org/m", "--quiet")
        assert code == 0 and out.strip().endswith(repo.commit)


def test_unreachable_endpoint(tmp_path: Path) -> None:
    code, _, err = run("--cache-dir", str(tmp_path), "--endpoint", "http://127.0.0.1:9", "download", "org/x")
    assert code == 5 and "cannot connect" in err


def test_unwritable_cache(tmp_path: Path) -> None:
    import os

    if os.geteuid() == 0:
        target = "/proc/modelcache-cannot-write-here"
    else:
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o500)
        target = str(ro / "cache")
    repo = Repo("org/m", {"config.json": b"{}", "tokenizer.json": b"{}"})
    with fault_server(repo) as srv:
        code, _, err = run("--cache-dir", target, "--endpoint", srv.url, "download", "org/m")
    assert code == 7 and "cannot" in err and "hint:" in err


def test_offline_miss(tmp_path: Path) -> None:
    code, _, err = run("--cache-dir", str(tmp_path), "--offline", "download", "org/x")
    assert code == 1 and "offline" in err


def test_import_commit_id_refused(tmp_path: Path, demo_model: Path) -> None:
    code, _, err = run("--cache-dir", str(tmp_path), "import", str(demo_model), "--repo", REPO, "--revision", "a" * 40)
    assert code == 2
