from __future__ import annotations

from pathlib import Path

import pytest

from modelcache.errors import InvalidInput
from modelcache.settings import Settings


def test_defaults_follow_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    s = Settings.from_env({})
    assert s.cache_dir == tmp_path / ".cache" / "huggingface" / "hub"
    assert s.endpoint == "https://huggingface.co"
    assert s.token.path == tmp_path / ".cache" / "huggingface" / "token"
    assert not s.offline


def test_precedence() -> None:
    env = {"XDG_CACHE_HOME": "/xdg", "HF_HOME": "/hfhome", "HF_HUB_CACHE": "/hubcache"}
    assert Settings.from_env(env).cache_dir == Path("/hubcache")
    assert Settings.from_env({"XDG_CACHE_HOME": "/xdg"}).cache_dir == Path("/xdg/huggingface/hub")
    assert Settings.from_env({"HF_HOME": "/h", "XDG_CACHE_HOME": "/xdg"}).cache_dir == Path("/h/hub")
    assert Settings.from_env({"HUGGINGFACE_HUB_CACHE": "/legacy", "HF_HOME": "/h"}).cache_dir == Path("/legacy")
    assert Settings.from_env(env, cache_dir="/flag").cache_dir == Path("/flag")


def test_endpoint_and_offline() -> None:
    s = Settings.from_env({"HF_ENDPOINT": "http://mirror:8080/", "HF_HUB_OFFLINE": "yes"})
    assert s.endpoint == "http://mirror:8080" and s.offline
    assert Settings.from_env({"HF_HUB_OFFLINE": "0"}).offline is False
    assert Settings.from_env({"HF_ENDPOINT": "http://a"}, endpoint="https://b/").endpoint == "https://b"
    with pytest.raises(InvalidInput):
        Settings.from_env({"HF_ENDPOINT": "ftp://x"})


def test_token_order_and_whitespace(tmp_path: Path) -> None:
    f = tmp_path / "secret"
    f.write_text("hf_fromfile\n")
    p = tmp_path / "path-token"
    p.write_text("  hf_frompath \n")
    home = tmp_path / "home"
    home.mkdir()
    (home / "token").write_text("hf_fromhome")
    env = {"HF_TOKEN": "hf_fromenv\n", "HF_TOKEN_PATH": str(p), "HF_HOME": str(home)}
    assert Settings.from_env(env, token_file=f).token.get() == "hf_fromfile"
    assert Settings.from_env(env).token.get() == "hf_fromenv"
    assert Settings.from_env({"HF_TOKEN_PATH": str(p), "HF_HOME": str(home)}).token.get() == "hf_frompath"
    assert Settings.from_env({"HF_HOME": str(home)}).token.get() == "hf_fromhome"
    assert Settings.from_env({"HF_HOME": str(tmp_path / "none")}).token.get() is None


def test_token_file_is_reread(tmp_path: Path) -> None:
    f = tmp_path / "secret"
    f.write_text("hf_one")
    s = Settings.from_env({}, token_file=f)
    assert s.token.get() == "hf_one"
    f.write_text("hf_two")
    assert s.token.get() == "hf_two"


def test_token_not_in_repr() -> None:
    s = Settings.from_env({"HF_TOKEN": "hf_secretvalue123"})
    assert "hf_secretvalue123" not in repr(s)


def test_proxy_and_ca_bundle_from_the_environment(tmp_path: Path) -> None:
    bundle = tmp_path / "ca.pem"
    bundle.write_text("")
    s = Settings.from_env({"HTTPS_PROXY": "http://proxy:3128", "NO_PROXY": "internal.example,.corp",
                           "REQUESTS_CA_BUNDLE": str(bundle)})
    n = s.network
    assert n.proxy_for("huggingface.co") == "http://proxy:3128"
    assert n.proxy_for("127.0.0.1") is None and n.proxy_for("localhost") is None
    assert n.proxy_for("internal.example") is None and n.proxy_for("hub.corp") is None
    assert n.ca_bundle == str(bundle)
    assert Settings.from_env({}).network.proxy_for("huggingface.co") is None


def test_a_missing_ca_bundle_is_an_error_not_a_silent_fallback(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="CA bundle"):
        Settings.from_env({"REQUESTS_CA_BUNDLE": str(tmp_path / "absent.pem")})


def test_every_way_to_make_settings_validates_alike(tmp_path: Path) -> None:
    s = Settings(cache_dir=str(tmp_path))  # type: ignore[arg-type]
    assert s.cache_dir == tmp_path
    for bad in ({"connections": 0}, {"connections": 1000}, {"chunk_size": 1}, {"endpoint": "ftp://x"},
                {"timeout": 0.0}, {"retries": -1}):
        with pytest.raises(InvalidInput):
            s.with_overrides(**bad)
        with pytest.raises(InvalidInput):
            Settings(cache_dir=tmp_path, **bad)  # type: ignore[arg-type]
    assert s.with_overrides(chunk_size="16MiB").chunk_size == 16 * 1024 * 1024


def test_from_env_starts_from_the_dataclass_defaults() -> None:
    s = Settings.from_env({})
    d = Settings(cache_dir=Path("/x"))
    assert (s.connections, s.chunk_size, s.timeout, s.checkpoint_bytes) == (
        d.connections, d.chunk_size, d.timeout, d.checkpoint_bytes)


def test_downloads_go_through_the_proxy(tmp_path: Path) -> None:
    """A forward proxy on loopback sees the request for a non-loopback endpoint name."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    seen: list[str] = []

    class Proxy(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            seen.append(self.path)
            body = b'{"error": "proxied"}'
            self.send_response(404)
            self.send_header("X-Error-Code", "RepoNotFound")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Proxy)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        from modelcache import ModelCache
        from modelcache.errors import RepoNotFound

        s = Settings.from_env({"HTTP_PROXY": f"http://127.0.0.1:{httpd.server_address[1]}"},
                              cache_dir=tmp_path / "c", endpoint="http://hub.invalid")
        with pytest.raises(RepoNotFound):
            ModelCache(s).download("org/m")
        assert seen and seen[0].startswith("http://hub.invalid/api/models/org/m/revision/main")
    finally:
        httpd.shutdown()
