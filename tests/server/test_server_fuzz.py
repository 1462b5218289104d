"""Whatever the raw path, the app answers 200 or a coded 4xx, and never a byte from outside the cache."""

from __future__ import annotations

import asyncio
from urllib.parse import unquote_to_bytes

import pytest
from helpers.live_server import import_demo
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modelcache.server import create_app

SECRET = b"FUZZ-SECRET-OUTSIDE-THE-CACHE"
TOKENS = [
    "..", ".", "", "%2e%2e", "%2E%2E%2F", "%2F", "%2f..%2f", "%5C", "..%5C", "%00", "%ff", "%", "~",
    "api", "models", "datasets", "spaces", "resolve", "tree", "revision", "main", "refs", "pr", "1",
    "refs%2Fpr%2F1", "modelcache", "tiny-llama", "config.json", "original", "params.json",
    "secret.txt", "etc", "passwd", "healthz", "a--b", "-x", "x" * 300,
]

PREFIXES = [
    (),
    ("modelcache", "tiny-llama", "resolve"),
    ("modelcache", "tiny-llama", "resolve", "main"),
    ("api", "models", "modelcache", "tiny-llama", "tree", "main"),
    ("api", "models", "modelcache", "tiny-llama"),
    ("datasets", "modelcache", "tiny-llama", "resolve"),
]


@pytest.fixture(scope="module")
def app_and_commit(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    root = tmp_path_factory.mktemp("fuzz")
    (root / "secret.txt").write_bytes(SECRET)
    record = import_demo(root / "cache")
    snapshot = root / "cache" / "models--modelcache--tiny-llama" / "snapshots" / record.commit
    (snapshot / "leak.txt").symlink_to(root / "secret.txt")
    return create_app(root / "cache"), record.commit


def _call(app, method: str, raw_path: bytes) -> tuple[int, dict[bytes, bytes], bytes]:  # type: ignore[no-untyped-def]
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": unquote_to_bytes(raw_path).decode("latin-1"),
        "raw_path": raw_path,
        "query_string": b"recursive=true",
        "root_path": "",
        "headers": [(b"host", b"testserver")],
        "server": ("testserver", 80),
        "client": ("127.0.0.1", 1),
    }
    messages: list[dict] = []
    sent = False

    async def receive() -> dict:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    async def send(message: dict) -> None:
        messages.append(message)

    asyncio.run(app(scope, receive, send))
    start = messages[0]
    body = b"".join(m.get("body", b"") for m in messages[1:])
    return start["status"], dict(start["headers"]), body


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.tuples(st.sampled_from(PREFIXES), st.lists(st.sampled_from(TOKENS), min_size=1, max_size=8)).map(
        lambda t: [*t[0], *t[1]]
    ),
    st.sampled_from(["GET", "HEAD"]),
    st.booleans(),
)
def test_any_path_is_safe(app_and_commit, parts: list[str], method: str, with_commit: bool) -> None:  # type: ignore[no-untyped-def]
    app, commit = app_and_commit
    if with_commit:
        parts = [commit if p == "main" else p for p in parts]
    status, headers, body = _call(app, method, ("/" + "/".join(parts)).encode())
    assert status in (200, 400, 404), (parts, status, body[:200])
    assert SECRET not in body
    if status != 200:
        assert headers.get(b"x-error-code"), parts


def test_fuzz_harness_reaches_files_and_the_leak_link(app_and_commit) -> None:  # type: ignore[no-untyped-def]
    app, _ = app_and_commit
    status, headers, body = _call(app, "GET", b"/modelcache/tiny-llama/resolve/main/config.json")
    assert status == 200 and b"llama" in body
    status, headers, body = _call(app, "GET", b"/modelcache/tiny-llama/resolve/main/leak.txt")
    assert status == 404 and SECRET not in body
