"""Tokens: sources, rotation, never printed, never sent where they don't belong; gated serving."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from helpers.fault_server import Repo, fault_server
from helpers.repos import model_repo
from helpers.live_server import import_demo, live_server

from modelcache import ModelCache, Settings, TokenSource
from modelcache.cache.access import read_access
from modelcache.cli.main import cli
from modelcache.hub.client import HubClient
from modelcache.server import TokenListPolicy, UpstreamPolicy

GOOD = "hf_testTOKENgoodAAAAAAAAAAAAAAAAAAAA"
BAD = "hf_testTOKENbadBBBBBBBBBBBBBBBBBBBBBB"
REPO = "modelcache/tiny-llama"


def small_repo() -> Repo:
    return model_repo("org/gated", weights=50_000)


def run(*args: str, env: dict | None = None) -> tuple[int, str, str]:
    res = CliRunner().invoke(cli, list(args), obj={}, env=env or {}, catch_exceptions=False)
    print(res.stdout, res.stderr)  # captured by pytest: the suite-wide token grep sees it
    return res.exit_code, res.stdout, res.stderr


# -- sources ------------------------------------------------------------------------------------------------
def test_mounted_secret_directory_and_rotation(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.mkdir()
    (secret / "HF_TOKEN").write_text(GOOD + "\n")
    s = Settings.from_env({"MODELCACHE_TOKEN_DIR": str(secret), "HF_HOME": str(tmp_path / "h")},
                          cache_dir=tmp_path / "c")
    assert s.token.origin == "mounted Secret" and s.token.get() == GOOD
    repo = small_repo()
    with fault_server(repo) as srv:
        srv.valid_tokens = {GOOD, BAD}
        mc = ModelCache(s.with_overrides(endpoint=srv.url))
        mc.download(repo.repo_id, profile="tokenizer")
        (secret / "HF_TOKEN").write_text(BAD)  # the Secret is rotated while the process runs
        mc.download(repo.repo_id)
        sent = [e.authorization for e in srv.log if "/resolve/" in e.path]
        assert f"Bearer {GOOD}" in sent and sent[-1] == f"Bearer {BAD}"


def test_token_inspection_notes(tmp_path: Path) -> None:
    f = tmp_path / "token"
    f.write_text(GOOD + "\n\n")
    f.chmod(0o644)
    report = TokenSource(path=f, origin="--token-file").inspect()
    assert report.present
    assert any("trailing newline" in n for n in report.notes)
    assert any("readable by every user" in n for n in report.notes)
    assert GOOD not in repr(report.to_dict())


def test_token_only_to_the_endpoint_over_safe_transport() -> None:
    tok = TokenSource(value=GOOD)
    assert HubClient("https://hub.example", tok).auth_headers("https://hub.example/x") == {"Authorization": f"Bearer {GOOD}"}
    assert HubClient("https://hub.example", tok).auth_headers("https://cdn.example/x") == {}
    assert HubClient("http://127.0.0.1:9", tok).auth_headers("http://127.0.0.1:9/x") != {}
    plain = HubClient("http://10.1.2.3:8080", tok)
    assert plain.auth_headers("http://10.1.2.3:8080/x") == {} and plain.token_withheld
    assert HubClient("http://10.1.2.3:8080", tok, allow_insecure_token=True).auth_headers("http://10.1.2.3:8080/x")


# -- token check ------------------------------------------------------------------------------------------
def test_token_check(tmp_path: Path) -> None:
    repo = small_repo()
    with fault_server(repo) as srv:
        srv.valid_tokens, srv.gated = {GOOD}, True
        good = tmp_path / "good"
        good.write_text(GOOD + "\n")
        good.chmod(0o600)
        code, out, _ = run("--endpoint", srv.url, "--token-file", str(good), "token", "check", repo.repo_id)
        assert code == 0 and "token valid: tester" in out and "can read org/gated" in out and "newline" in out
        bad = tmp_path / "bad"
        bad.write_text(BAD)
        code, out, _ = run("--endpoint", srv.url, "--token-file", str(bad), "token", "check", repo.repo_id, "--json")
        assert code == 4 and '"rejects the token' in out.replace("\\", "") or "rejects the token" in out
        code, out, _ = run("--endpoint", srv.url, "token", "check", repo.repo_id, env={"HF_HOME": str(tmp_path / "x")})
        assert code == 4 and "no token" in out and "fix:" in out
    assert GOOD not in out and BAD not in out


# -- never printed -------------------------------------------------------------------------------------------
def test_token_never_printed_by_the_cli(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update(HF_TOKEN=GOOD + "\n", HF_HOME=str(tmp_path / "h"))
    outputs = []
    for args in (["--help"], ["download", "--help"], ["download", "../bad"], ["--endpoint", "http://127.0.0.1:9",
                 "download", "org/x"], ["token", "check", "--json"], ["--offline", "download", "org/x", "--json"]):
        p = subprocess.run([sys.executable, "-m", "modelcache", "--cache-dir", str(tmp_path / "c"), *args],
                           env=env, capture_output=True, text=True, timeout=60)
        outputs.append(p.stdout + p.stderr)
        print(p.stdout, p.stderr)
    assert all(GOOD not in o for o in outputs)


def test_redaction_layer_masks_what_slips_through(capsys: pytest.CaptureFixture[str]) -> None:
    from modelcache.redact import RedactingStream, register_secret

    register_secret(BAD)
    stream = RedactingStream(sys.stdout)
    stream.write(f"oops, a library logged Authorization: Bearer {BAD}\n")
    assert BAD not in capsys.readouterr().out


# -- gated and private repos on a shared cache ------------------------------------------------------------------
@pytest.fixture
def gated_cache(tmp_path: Path) -> Path:
    cache = tmp_path / "shared"
    import_demo(cache)
    mc = ModelCache(Settings(cache_dir=cache, offline=True))
    from modelcache.cache.access import Access, write_access

    write_access(mc.layout(REPO), Access(gated=True))
    return cache


def _hf_get(url: str, token: str | bool, tmp_path: Path) -> str:
    from huggingface_hub import hf_hub_download

    return hf_hub_download(REPO, "config.json", endpoint=url, token=token, cache_dir=tmp_path / f"hf-{os.urandom(4).hex()}")


def test_gated_repo_with_token_list(tmp_path: Path, gated_cache: Path) -> None:
    from huggingface_hub import HfApi
    from huggingface_hub.errors import GatedRepoError

    allowed = tmp_path / "allowed"
    allowed.write_text(f"# tokens allowed to read gated repos\n{GOOD}\n")
    with live_server(gated_cache, access=TokenListPolicy.from_file(allowed)) as url:
        assert Path(_hf_get(url, GOOD, tmp_path)).is_file()
        with pytest.raises(GatedRepoError):
            _hf_get(url, False, tmp_path)
        with pytest.raises(GatedRepoError):
            _hf_get(url, BAD, tmp_path)
        info = HfApi(endpoint=url).model_info(REPO, token=False)  # metadata of a gated repo stays public
        assert info.sha and info.gated == "manual"


def test_gated_repo_checked_against_upstream(tmp_path: Path, gated_cache: Path) -> None:
    from huggingface_hub.errors import GatedRepoError

    with fault_server(Repo(REPO, {"config.json": b"{}"})) as upstream:
        upstream.valid_tokens, upstream.gated = {GOOD}, True
        with live_server(gated_cache, access=UpstreamPolicy(upstream.url, ttl=60)) as url:
            _hf_get(url, GOOD, tmp_path)
            _hf_get(url, GOOD, tmp_path)
            with pytest.raises(GatedRepoError):
                _hf_get(url, BAD, tmp_path)
        checks = [e for e in upstream.log if e.method == "HEAD"]
        assert len(checks) == 2  # one per token: decisions are cached
        assert {e.authorization for e in checks} == {f"Bearer {GOOD}", f"Bearer {BAD}"}


def test_no_policy_fails_closed_and_private_is_invisible(tmp_path: Path, gated_cache: Path) -> None:
    from huggingface_hub import HfApi
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError

    from modelcache.cache.access import Access, write_access

    with live_server(gated_cache) as url:
        with pytest.raises(GatedRepoError):
            _hf_get(url, GOOD, tmp_path)
        write_access(ModelCache(Settings(cache_dir=gated_cache)).layout(REPO), Access(private=True))
        with pytest.raises(RepositoryNotFoundError):
            HfApi(endpoint=url).model_info(REPO, token=GOOD)


def test_download_records_gated_flag(tmp_path: Path) -> None:
    repo = small_repo()
    with fault_server(repo) as srv:
        srv.valid_tokens, srv.gated = {GOOD}, True
        mc = ModelCache(Settings(cache_dir=tmp_path / "c", endpoint=srv.url, token=TokenSource(value=GOOD)))
        mc.download(repo.repo_id)
        assert read_access(mc.layout(repo.repo_id)).gated
        denied = ModelCache(Settings(cache_dir=tmp_path / "d", endpoint=srv.url, token=TokenSource(value=BAD)))
        from modelcache.errors import GatedRepo

        with pytest.raises(GatedRepo) as err:
            denied.download(repo.repo_id)
        assert BAD not in str(err.value)


def test_permissions_fit_a_shared_volume(tmp_path: Path) -> None:
    import stat

    repo = small_repo()
    old = os.umask(0o022)
    try:
        with fault_server(repo) as srv:
            mc = ModelCache(Settings(cache_dir=tmp_path / "c", endpoint=srv.url, token=TokenSource()))
            res = mc.download(repo.repo_id)
            lease = mc.acquire_lease(repo.repo_id, "main", "pod", ttl=60)
    finally:
        os.umask(old)
    layout = mc.layout(repo.repo_id)
    for d in (layout.state, layout.locks, layout.blobs):
        assert stat.S_IMODE(d.stat().st_mode) & 0o070 == 0o070, d
    for f in layout.blobs.iterdir():
        assert stat.S_IMODE(f.stat().st_mode) & 0o040, f  # group-readable
    lease_file = next((layout.state / "leases").rglob(f"{lease.lease_id}.json"))
    assert stat.S_IMODE(lease_file.stat().st_mode) & 0o060 == 0o060
    assert (res.snapshot / "config.json").read_bytes() == repo.files["config.json"]
