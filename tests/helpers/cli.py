"""Running the ``modelcache`` CLI in-process, as a user would, with nothing from the shell's env.

    code, out, err = run_cli("--cache-dir", str(cache), "ls", "--json")
"""

from __future__ import annotations

from click.testing import CliRunner

from modelcache.cli.main import cli

__all__ = ["run_cli"]


def run_cli(*args: str, env: dict[str, str] | None = None, input: str | None = None) -> tuple[int, str, str]:
    """Exit code, stdout, stderr. What it printed is echoed, so the suite-wide token grep sees it."""
    res = CliRunner().invoke(cli, list(args), obj={}, env=env or {}, input=input, catch_exceptions=False)
    print(res.stdout, res.stderr)
    return res.exit_code, res.stdout, res.stderr
