"""download → check through the CLI against a real loopback server: judged by what was asked."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner
from helpers.fault_server import Repo, fault_server

from modelcache.cli.main import cli

REPO = "org/m"


def run(*args: str, env: dict | None = None) -> tuple[int, str, str]:
    res = CliRunner().invoke(cli, list(args), obj={}, env=env or {}, catch_exceptions=False)
    return res.exit_code, res.stdout, res.stderr


def files(**extra: bytes) -> dict[str, bytes]:
    index = {"weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}
    out = {"config.json": b'{"model_type": "llama"}', "tokenizer.json": b'{"model": {}}',
           "model.safetensors.index.json": json.dumps(index).encode(),
           "model-00001-of-00002.safetensors": b"1" * 64, "model-00002-of-00002.safetensors": b"2" * 64,
           "README.md": b"# card", "original/consolidated.00.pth": b"o" * 128}
    out.update(extra)
    return out


def test_filtered_download_is_full_ready_and_check_takes_the_same_filter(tmp_path: Path) -> None:
    with fault_server(Repo(REPO, files())) as srv:
        base = ["--cache-dir", str(tmp_path / "c"), "--endpoint", srv.url]
        code, _, err = run(*base, "download", REPO, "--exclude", "original/*", "--exclude", "README.md", "--quiet")
        assert code == 0, err
        assert "warning" not in err
    base = ["--cache-dir", str(tmp_path / "c")]
    code, out, err = run(*base, "check", REPO, "--json")
    data = json.loads(out)
    assert code == 0 and data["ready"] and data["not_asked"] == 2, err
    code, out, _ = run(*base, "check", REPO, "--include", "*.json", "--include", "*.safetensors")
    assert code == 0
    code, _, err = run(*base, "check", REPO, "--include", "*")  # asking for everything: the card is missing
    assert code == 1 and "README.md" in err
    code, out, _ = run(*base, "ls")
    assert "--exclude original/*" in out and "partial" not in out


def test_download_warns_when_the_index_names_a_missing_shard(tmp_path: Path) -> None:
    f = files()
    del f["model-00002-of-00002.safetensors"]
    with fault_server(Repo(REPO, f)) as srv:
        base = ["--cache-dir", str(tmp_path / "c"), "--endpoint", srv.url]
        code, _, err = run(*base, "download", REPO, "--quiet")
        assert code == 0
        assert "warning:" in err and "model-00002-of-00002.safetensors" in err
        code, out, _ = run(*base, "download", REPO, "--quiet", "--json")
        assert "model-00002-of-00002.safetensors" in json.loads(out)["note"]
    code, _, err = run("--cache-dir", str(tmp_path / "c"), "check", REPO)
    assert code == 1 and "named by model.safetensors.index.json" in err


def test_download_warns_when_a_pattern_or_profile_matches_nothing(tmp_path: Path) -> None:
    with fault_server(Repo(REPO, {"model.gguf": b"G" * 32, "README.md": b"x"})) as srv:
        base = ["--cache-dir", str(tmp_path / "c"), "--endpoint", srv.url]
        code, _, err = run(*base, "download", REPO, "--profile", "tokenizer", "--quiet")
        assert code == 0 and "profile tokenizer matches no file" in err
    with fault_server(Repo(REPO, files())) as srv:
        base = ["--cache-dir", str(tmp_path / "d"), "--endpoint", srv.url]
        code, _, err = run(*base, "download", REPO, "--include", "*.json", "--include", "*.safetnesors", "--quiet")
        assert code == 0 and "'*.safetnesors' matches no file" in err
        assert "model-00001-of-00002.safetensors" in err  # and the result is not loadable, by name


def test_quota_refusal_leaves_nothing_behind(tmp_path: Path) -> None:
    cache = tmp_path / "c"
    assert run("--cache-dir", str(cache), "quota", "set", "100")[0] == 0
    with fault_server(Repo(REPO, files())) as srv:
        code, out, err = run("--cache-dir", str(cache), "--endpoint", srv.url, "download", REPO)
    assert code == 7
    assert "repo_id" not in err and '"event"' not in err
    assert "--max-size 0B" not in err and "quota set" in err
    assert not [p for p in cache.iterdir() if p.name.startswith("models--")]
    code, out, _ = run("--cache-dir", str(cache), "ls", "--json")
    assert json.loads(out)["repos"] == []


def test_offline_download_of_a_filtered_model_is_judged_by_the_filter(tmp_path: Path) -> None:
    with fault_server(Repo(REPO, files())) as srv:
        base = ["--cache-dir", str(tmp_path / "c"), "--endpoint", srv.url]
        assert run(*base, "download", REPO, "--exclude", "original/*", "--quiet")[0] == 0
    code, out, err = run("--cache-dir", str(tmp_path / "c"), "--offline", "download", REPO, "--exclude", "original/*")
    assert code == 0, err
    code, out, err = run("--cache-dir", str(tmp_path / "c"), "--offline", "download", REPO)
    assert code == 1 and "original/consolidated.00.pth" in err and "drop --offline" in err


def test_download_into_a_cache_whose_folders_do_not_exist_yet(tmp_path: Path) -> None:
    with fault_server(Repo(REPO, files())) as srv:
        code, out, err = run("--cache-dir", str(tmp_path / "a" / "b" / "hub"), "--endpoint", srv.url, "download",
                             REPO, "--quiet")
    assert code == 0, err  # the room check looks at the disk of the nearest folder that exists
