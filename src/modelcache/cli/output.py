"""Printing: JSON for machines, one clear line (what, why, what to do) for people."""

from __future__ import annotations

import json

import click

from .._format import human_size, human_time
from ..errors import ModelCacheError

__all__ = ["emit", "emit_error", "human_size", "human_time"]


def emit(data: object) -> None:
    """Print ``data`` as indented JSON on stdout (anything not JSON-able as its ``str``)."""
    click.echo(json.dumps(data, indent=2, sort_keys=False, default=str))


def emit_error(exc: ModelCacheError, as_json: bool = False) -> None:
    """Print the error for a person (``error:`` and ``hint:`` lines on stderr), or with ``as_json`` as JSON.

    The JSON line goes to stdout: ``to_dict()`` plus ``exit_code``.
    """
    if as_json:
        click.echo(json.dumps({**exc.to_dict(), "exit_code": exc.exit_code}))
        return
    line = f"error: {exc.message}"
    if exc.hint:
        line += f"\n  hint: {exc.hint}"
    click.echo(line, err=True)
