"""A crafted, deeply nested YAML file (``sync -f``, ``k8s validate``) is one clear error, never a traceback."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from helpers.procs import clean_env, modelcache_cmd


@pytest.mark.parametrize("text", ["[" * 100_000, "models:\n" + "- " * 50_000 + "x\n"])
@pytest.mark.parametrize("cmd", [("sync", "-f"), ("k8s", "validate")])
def test_deeply_nested_yaml_is_one_line_error(tmp_path: Path, text: str, cmd: tuple[str, ...]) -> None:
    bad = tmp_path / "modelcache.yaml"
    bad.write_text(text)
    args = [*cmd, str(bad)] + (["--dry-run"] if cmd[0] == "sync" else [])
    proc = subprocess.run(modelcache_cmd("--cache-dir", str(tmp_path / "cache"), *args), capture_output=True,
                          text=True, env=clean_env(), timeout=60)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr and "RecursionError" not in proc.stderr, proc.stderr[-500:]
    assert "nested too deeply" in proc.stderr or "not valid YAML" in proc.stderr, proc.stderr[-500:]
