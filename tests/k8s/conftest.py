"""Fixtures for the Kubernetes tests (helpers live in ``tests/helpers/k8s.py``)."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers.k8s import run


@pytest.fixture
def render_dir(tmp_path: Path):  # type: ignore[no-untyped-def]
    """Render with the CLI into a folder; returns (exit code, {filename: text}, stderr)."""

    def _render(*args: str, env: dict[str, str] | None = None, input: str | None = None,
                pre: tuple[str, ...] = ()) -> tuple[int, dict[str, str], str]:
        out = tmp_path / f"out{len(list(tmp_path.iterdir()))}"
        code, _, err = run(*pre, "k8s", "render", *args, "--output", str(out), env=env, input=input)
        files = {p.name: p.read_text() for p in sorted(out.glob("*.yaml"))} if out.exists() else {}
        return code, files, err

    return _render
