"""#11.6/#11.7: junk a co-tenant plants at any state file never gives a traceback or a hang.

Every state file modelcache reads (locks, leases, markers, last use, quota, registry, gc
stats, completeness records, refs, access records) and odd snapshot folder names, against
every kind of junk (FIFO, folder, link out of the cache, ``1e999``, ``NaN``, deep nesting,
binary bytes, wrong JSON types, too big): ``ls``, ``check``, ``verify``, ``gc`` and ``serve``'s
start-up answer with one line (a warning naming the file), never a traceback, never a hang.
"""

from __future__ import annotations

import faulthandler
import json
import logging
import os
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from helpers.live_server import import_demo

from modelcache.cli.main import cli
from modelcache.files import CorruptState, read_json_state

REPO = "org/m"
FOLDER = "models--org--m"

JUNK = {
    "fifo": None,
    "dir": None,
    "link-out": None,
    "inf": b'{"max_size": 1e999, "expires": 1e999, "created": 1e999, "pid": 1e999, "gated": 1e999}',
    "nan": b'{"max_size": NaN, "expires": NaN, "pid": NaN, "x": Infinity}',
    "deep": b"[" * 50_000 + b"]" * 50_000,
    "binary": bytes(range(256)) * 4,
    "types": b'{"format_version": 1, "files": [1, 2], "max_size": "big", "lease_id": [], "commit": {}, '
             b'"expires": "soon", "created": null, "pid": "me", "gated": "yes", "models": 5}',
    "array": b"[1, 2, 3]",
    "big": b'{"a": "' + b"x" * (2 << 20) + b'"}',
    "empty": b"",
}


def _state_files(cache: Path, commit: str) -> dict[str, Path]:
    repo = cache / FOLDER
    return {
        "repo-lock": cache / ".locks" / FOLDER / "repo.mc-lock",
        "blob-lock": cache / ".locks" / FOLDER / f"{'a' * 40}.mc-lock",
        "lease": repo / ".modelcache" / "leases" / commit / f"{'b' * 32}.json",
        "marker": repo / ".modelcache" / "active" / f"{commit}.{'c' * 32}",
        "used": repo / ".modelcache" / "used" / commit,
        "quota": cache / ".locks" / "modelcache" / "quota.json",
        "registry": cache / ".locks" / "modelcache" / "models.json",
        "gc-stats": cache / ".locks" / "modelcache" / "gc-stats.json",
        "record": repo / "trees" / f"{commit}.json",
        "ref": repo / "refs" / "main",
        "access": repo / ".modelcache" / "access.json",
    }


def plant(path: Path, kind: str, outside: Path) -> None:
    """Replace whatever is at ``path`` by junk of ``kind``."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif os.path.lexists(path):
        path.unlink()
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "dir":
        path.mkdir()
        (path / "junk").write_bytes(b"junk")
    elif kind == "link-out":
        os.symlink(outside / "secret.json", path)
    else:
        path.write_bytes(JUNK[kind])


@pytest.fixture
def cache(tmp_path: Path) -> tuple[Path, str, Path]:
    cache = tmp_path / "cache"
    record = import_demo(cache, REPO)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.json").write_text('{"max_size": 1, "gated": false, "private": false}')
    return cache, record.commit, outside


@pytest.fixture(autouse=True)
def _no_hang() -> object:
    """A hang (a FIFO opened blocking) kills the run with a stack dump instead of waiting forever."""
    faulthandler.dump_traceback_later(60, exit=True)
    yield
    faulthandler.cancel_dump_traceback_later()


def run(cache: Path, *args: str) -> tuple[int, str]:
    res = CliRunner().invoke(cli, ["--cache-dir", str(cache), "--offline", *args], obj={},
                             catch_exceptions=True)
    out = res.output + (res.stderr if res.stderr_bytes is not None else "")
    assert res.exception is None or isinstance(res.exception, SystemExit), (
        f"{args}: {type(res.exception).__name__}: {res.exception}\n{out}")
    assert "Traceback" not in out, out
    return res.exit_code, out


def _serve_start(cache: Path) -> None:
    from starlette.testclient import TestClient

    from modelcache.server import create_app

    with TestClient(create_app(cache)) as client:
        for url in ("/healthz", "/readyz", "/metrics", "/modelcache/models", f"/api/models/{REPO}",
                    f"/{REPO}/resolve/main/config.json"):
            r = client.get(url)
            assert r.status_code < 500, (url, r.status_code, r.text)


@pytest.mark.parametrize("kind", sorted(JUNK))
def test_junk_at_every_state_file(cache: tuple[Path, str, Path], kind: str, caplog: pytest.LogCaptureFixture) -> None:
    root, commit, outside = cache
    files = _state_files(root, commit)
    for path in files.values():
        plant(path, kind, outside)
    before = {p.name: p.read_bytes() for p in outside.iterdir()}
    with caplog.at_level(logging.WARNING):
        for args in (["ls"], ["ls", "--json"], ["check", REPO], ["check", REPO, "--profile", "tokenizer"],
                     ["verify", REPO], ["gc", "--dry-run", "--max-size", "1"], ["quota", "show"],
                     ["models", "ls"], ["gc", "--max-size", "1"]):
            run(root, *args)
        _serve_start(root)
    assert {p.name: p.read_bytes() for p in outside.iterdir()} == before
    if kind in ("fifo", "link-out", "inf", "nan", "deep", "binary"):
        # the state files that are read say which file is wrong and how to fix it
        assert "corrupt state file" in caplog.text or "unreadable" in caplog.text


def test_warning_names_the_file_and_the_fix(tmp_path: Path) -> None:
    for kind in ("inf", "nan", "deep", "binary", "array", "big"):
        p = tmp_path / f"{kind}.json"
        p.write_bytes(JUNK[kind])
        with pytest.raises(CorruptState) as err:
            read_json_state(p)
        assert str(p) in str(err.value) and "remove it" in err.value.hint
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(CorruptState, match="not a regular file"):
        read_json_state(tmp_path / "fifo")  # returns at once: O_NONBLOCK, then S_ISREG
    assert read_json_state(tmp_path / "missing.json") is None
    assert read_json_state(tmp_path / "ok.json") is None
    (tmp_path / "ok.json").write_text(json.dumps({"a": [1.5, {"b": None}]}))
    assert read_json_state(tmp_path / "ok.json") == {"a": [1.5, {"b": None}]}


def test_ref_fifo_does_not_hang_check_or_ls(cache: tuple[Path, str, Path]) -> None:
    root, commit, outside = cache
    plant(root / FOLDER / "refs" / "main", "fifo", outside)
    code, out = run(root, "check", REPO)
    assert code != 0 and "refs/main" in out
    code, out = run(root, "check", REPO, "--revision", commit)
    assert code == 0, out  # the commit itself is still ready


def test_odd_snapshot_folder_names(cache: tuple[Path, str, Path]) -> None:
    root, commit, outside = cache
    snaps = root / FOLDER / "snapshots"
    for name in ("not-a-commit", "x" * 40, "..." , "a\nb", " " * 3, "Z" * 40):
        (snaps / name).mkdir()
        (snaps / name / "config.json").write_text("{}")
    os.symlink(outside, snaps / ("e" * 40))  # a snapshot "folder" that is a link out of the cache
    for args in (["ls"], ["ls", "--json"], ["check", REPO], ["verify", REPO], ["gc", "--max-age", "0s"]):
        run(root, *args)
    assert (outside / "secret.json").exists()
    _serve_start(root)


def test_junk_snapshot_index_json_is_never_opened_blocking(cache: tuple[Path, str, Path]) -> None:
    root, commit, outside = cache
    index = root / FOLDER / "snapshots" / commit / "model.safetensors.index.json"
    blob = Path(os.path.realpath(index))
    blob.unlink()
    os.mkfifo(blob)  # the blob behind the link is now a FIFO
    code, out = run(root, "check", REPO)
    assert code != 0
    code, out = run(root, "verify", REPO)
    assert code != 0 and "model.safetensors.index.json" in out
    _serve_start(root)


@pytest.mark.parametrize("kind", ["fifo", "dir", "link-out", "inf", "deep", "binary", "types"])
def test_download_over_junk_state(cache: tuple[Path, str, Path], tmp_path: Path, kind: str) -> None:
    """``download`` into a cache whose state files are junk: done (or one clear line), never a traceback."""
    from helpers.live_server import live_server

    root, commit, outside = cache
    upstream = tmp_path / "upstream"
    import_demo(upstream, REPO)
    for name, path in _state_files(root, commit).items():
        if name not in ("record", "ref"):  # those two are rewritten by the download itself
            plant(path, kind, outside)
    before = {p.name: p.read_bytes() for p in outside.iterdir()}
    with live_server(upstream) as url:
        res = CliRunner().invoke(cli, ["--cache-dir", str(root), "--endpoint", url, "download", REPO], obj={},
                                 catch_exceptions=True)
    assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)
    assert "Traceback" not in res.output
    assert {p.name: p.read_bytes() for p in outside.iterdir()} == before
    code, out = run(root, "check", REPO)
    assert code == 0 or "budget" in res.output or "quota" in res.output, res.output + out
