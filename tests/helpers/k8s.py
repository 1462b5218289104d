"""Helpers for the Kubernetes tests: run the CLI, parse a rendered command line with our own
CLI parser, load rendered YAML. (A module of ``tests/helpers``, not a conftest: test modules
of several folders importing ``conftest`` would get whichever was imported first.)"""

from __future__ import annotations

from typing import Any

import click
import yaml
from click.testing import CliRunner

from modelcache.cli.main import cli

COMMIT = "9216db5781bf21249d130ec9da846c4624c16137"


def run(*args: str, env: dict[str, str] | None = None, input: str | None = None) -> tuple[int, str, str]:
    """Exit code, stdout, stderr of the CLI run in-process (stdout not echoed: rendered YAML is long)."""
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
