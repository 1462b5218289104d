"""Suite-wide: every test runs with no HF_* variables from the developer's shell, and the
test helpers (`tests/helpers/`) importable from any test folder."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

_ISOLATED = [k for k in os.environ if k.startswith(("HF_", "HUGGINGFACE_", "HUGGING_FACE_"))] + ["TRANSFORMERS_OFFLINE"]


@pytest.fixture(autouse=True)
def _isolate_hf_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for key in _ISOLATED:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")


@pytest.fixture
def demo_model() -> Path:
    from modelcache.cli.demo import demo_model_dir

    return demo_model_dir()


# Every test token contains this marker. Whatever a test prints (captured stdout/stderr/logs,
# including the CLI output the tests echo) must never contain one: the suite-wide token grep.
TEST_TOKEN_MARK = "hf_testTOKEN"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> object:
    outcome = yield
    report = outcome.get_result()
    leaked = [name for name, content in report.sections if TEST_TOKEN_MARK in content]
    if leaked and report.outcome != "failed":
        report.outcome = "failed"
        report.longrepr = f"a test token was printed (in {', '.join(leaked)}): the redaction layer failed"
    return None
