"""Printing: JSON for machines, one clear line (what, why, what to do) for people."""

from __future__ import annotations

import json

import click

from .._format import human_size, human_time
from ..errors import ModelCacheError

__all__ = ["emit", "emit_error", "human_size", "human_time"]


def emit(data: object) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=False, default=str))


def emit_error(exc: ModelCacheError, as_json: bool = False) -> None:
    if as_json:
        click.echo(json.dumps({**exc.to_dict(), "exit_code": exc.exit_code}))
        return
    line = f"error: {exc.message}"
    if exc.hint:
        line += f"\n  hint: {exc.hint}"
    click.echo(line, err=True)
