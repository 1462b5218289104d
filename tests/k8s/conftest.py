"""Helpers for the Kubernetes tests: run the CLI, parse a rendered command line with our own
CLI parser, load rendered YAML."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
import pytest
import yaml
from click.testing import CliRunner

from modelcache.cli.main import cli

COMMIT = "9216db5781bf21249d130ec9da846c4624c16137"


def run(*args: str, env: dict[str, str] | None = None, input: str | None = None) -> tuple[int, str, str]:
    res = CliRunner().invoke(cli, list(args), obj={}, env=env or {}, input=input, catch_exceptions=False)
    return res.exit_code, res.stdout, res.stderr


def parse_cli(argv: list[str]) -> tuple[dict[str, Any], str, dict[str, Any]]:
    """``modelcache [globals] CMD [args]`` parsed by our own click parser, without running it:
    (global params, command name, command params). Raises click's UsageError when refused."""
    assert argv[0] == "modelcache", argv
    ctx = cli.make_context("modelcache", list(argv[1:]), obj={})
    rest = [*(getattr(ctx, "_protected_args", None) or []), *ctx.args]
    name, cmd, args = cli.resolve_command(ctx, rest)
    assert cmd is not None and name is not None
    sub = cmd.make_context(name, list(args), parent=ctx)
    assert isinstance(sub, click.Context)
    return ctx.params, name, sub.params


def load_all(text: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(text) if d]


def by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


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
