"""#14.2 and #11.12: API calls (revision, file list) are retried on 429/5xx/resets/timeouts with
backoff and jitter within an overall deadline, and are bounded (size cap, deadline per call,
http/https redirects only)."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from api_fault_server import api_fault_server
from helpers.fault_server import Repo
from helpers.repos import model_repo

from modelcache import ModelCache, Settings
from modelcache.errors import ProtocolError, TransientError
from modelcache.hub.client import HubClient
from modelcache.hub.retry import Backoff, RetryPolicy
from modelcache.progress import LineProgress


def small_repo() -> Repo:
    return model_repo("org/api", weights=200_000)


def fast_policy(deadline: float = 30.0, **kw: object) -> RetryPolicy:
    return RetryPolicy(deadline=deadline, backoff=Backoff(base=0.01, cap=0.05, attempts=10**6,
                                                          rand=lambda lo, hi: hi), **kw)  # type: ignore[arg-type]


def cache(tmp_path: Path, url: str, policy: RetryPolicy, name: str = "cache", **kw: object) -> ModelCache:
    s = Settings(cache_dir=tmp_path / name, endpoint=url, timeout=5, **kw)  # type: ignore[arg-type]
    mc = ModelCache(s)
    mc._client = HubClient.for_settings(s, retry=policy)
    return mc


def test_a_rate_limited_hub_never_fails_a_fleet(tmp_path: Path) -> None:
    """30 % of API calls answered 429 (with or without Retry-After), 503 or a reset:
    20 concurrent downloads into one shared cache all succeed."""
    repo = small_repo()
    with api_fault_server(repo) as srv:
        srv.api_fault_rate = 0.3
        errors: list[BaseException] = []

        def pod(i: int) -> None:
            try:
                cache(tmp_path, srv.url, fast_policy(), connections=2).download(repo.repo_id)
            except BaseException as exc:  # noqa: BLE001
                errors.append(exc)

        threads = [threading.Thread(target=pod, args=(i,)) for i in range(20)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert not errors, errors[:3]
        assert srv.api_faulted >= 5  # the faults really happened
    mc = ModelCache(Settings(cache_dir=tmp_path / "cache", offline=True))
    assert mc.check(repo.repo_id).ready
    assert all(r.ok for r in mc.verify(repo.repo_id))


def test_progress_says_it_is_waiting_and_why(tmp_path: Path) -> None:
    repo = small_repo()
    with api_fault_server(repo) as srv:
        srv.api_faults = (429,)
        srv.api_fault_rate = 1.0
        out = io.StringIO()
        mc = cache(tmp_path, srv.url, fast_policy())
        t = threading.Timer(0.3, lambda: setattr(srv, "api_fault_rate", 0.0))
        t.start()
        mc.download(repo.repo_id, progress=LineProgress(out, json_lines=True))
    events = [json.loads(line) for line in out.getvalue().splitlines()]
    waits = [e for e in events if e["event"] == "waiting"]
    assert waits and "rate limited" in waits[0]["reason"] and "429" in waits[0]["reason"]
    assert waits[0]["retry_in_s"] >= 0


def test_retries_stop_at_the_deadline(tmp_path: Path) -> None:
    """Always 503: the call gives up when the deadline (a fake clock) is reached, not before."""
    repo = small_repo()
    now = [0.0]
    slept: list[float] = []

    def sleep(s: float) -> None:
        slept.append(s)
        now[0] += s

    policy = RetryPolicy(deadline=10.0, backoff=Backoff(base=0.5, cap=2.0, attempts=10**6, rand=lambda lo, hi: hi),
                         sleep=sleep, clock=lambda: now[0])
    with api_fault_server(repo) as srv:
        srv.api_faults = (503,)
        srv.api_fault_rate = 1.0
        with pytest.raises(TransientError) as exc:
            cache(tmp_path, srv.url, policy).download(repo.repo_id)
    assert "gave up after" in exc.value.message
    assert 8.0 <= sum(slept) <= 10.0 and max(slept) == 2.0  # backoff grew to its cap


def test_retry_after_beyond_the_deadline_fails_at_once(tmp_path: Path) -> None:
    """429 with ``Retry-After: 300`` and a 5 s deadline: one clear error now, no pointless wait."""
    repo = small_repo()
    slept: list[float] = []
    with api_fault_server(repo) as srv:
        srv.api_faults = (429,)
        srv.api_fault_rate = 1.0
        srv.retry_after = "300"
        srv.rng.random = lambda: 0.0  # type: ignore[method-assign]  # always a fault, always Retry-After
        policy = RetryPolicy(deadline=5.0, sleep=slept.append)
        with pytest.raises(TransientError) as exc:
            cache(tmp_path, srv.url, policy).download(repo.repo_id)
    assert "HTTP 429" in exc.value.message and slept == []
    assert exc.value.retry_after == 300.0


def test_a_trickling_api_answer_fails_after_the_deadline(tmp_path: Path) -> None:
    repo = small_repo()
    with api_fault_server(repo) as srv:
        srv.api_mode = "trickle"
        t0 = time.monotonic()
        with pytest.raises(TransientError) as exc:
            cache(tmp_path, srv.url, fast_policy(deadline=1.0)).download(repo.repo_id)
        assert time.monotonic() - t0 < 20  # (bounded; not a timing assertion on the deadline itself)
    assert "within 1s" in exc.value.message or "gave up" in exc.value.message


def test_an_api_call_that_never_answers_times_out_and_gives_up(tmp_path: Path) -> None:
    repo = small_repo()
    with api_fault_server(repo) as srv:
        srv.api_mode = "stall"
        s = Settings(cache_dir=tmp_path / "c", endpoint=srv.url, timeout=0.3)
        mc = ModelCache(s)
        mc._client = HubClient.for_settings(s, retry=fast_policy(deadline=1.0))
        with pytest.raises(TransientError) as exc:
            mc.download(repo.repo_id)
    assert "timed out" in exc.value.message.lower() or "gave up" in exc.value.message


def test_an_endless_json_answer_fails_at_the_cap(tmp_path: Path) -> None:
    repo = small_repo()
    with api_fault_server(repo) as srv:
        srv.api_mode = "endless"
        s = Settings(cache_dir=tmp_path / "c", endpoint=srv.url, timeout=5, api_max_bytes=2 * 1024 * 1024)
        mc = ModelCache(s)
        mc._client = HubClient.for_settings(s, retry=fast_policy())
        with pytest.raises(ProtocolError) as exc:
            mc.download(repo.repo_id)
    assert "larger than 2 MiB" in exc.value.message


def test_a_redirect_to_file_is_one_clear_error(tmp_path: Path) -> None:
    repo = small_repo()
    with api_fault_server(repo) as srv:
        srv.api_mode = "redirect-file"
        env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
        proc = subprocess.run([sys.executable, "-m", "modelcache", "--cache-dir", str(tmp_path / "c"), "--endpoint",
                               srv.url, "download", repo.repo_id], env=env, capture_output=True, timeout=60)
    err = proc.stderr.decode()
    assert proc.returncode != 0
    assert "Traceback" not in err and "non-HTTP URL (file:)" in err, err
    assert len([line for line in err.splitlines() if line.strip()]) <= 3, err


def test_an_api_redirect_to_a_url_that_does_not_parse_is_one_clear_error(tmp_path: Path) -> None:
    repo = small_repo()
    with api_fault_server(repo) as srv:
        srv.api_mode = "redirect-bad-port"
        with pytest.raises(ProtocolError) as exc:
            cache(tmp_path, srv.url, fast_policy()).download(repo.repo_id)
    assert "does not parse" in exc.value.message


def test_a_file_redirect_to_another_scheme_is_refused(tmp_path: Path) -> None:
    repo = small_repo()
    with api_fault_server(repo) as srv:
        srv.redirect_to = "ftp://127.0.0.1:1"
        with pytest.raises(ProtocolError) as exc:
            cache(tmp_path, srv.url, fast_policy()).download(repo.repo_id)
    assert "non-HTTP URL (ftp:)" in exc.value.message
