"""Shared pieces of the CLI: context settings, ``--json``, settings from the root context."""

from __future__ import annotations

import click

from ..settings import Settings
from .output import emit

__all__ = ["CONTEXT", "emit", "json_option", "settings_of"]

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


def json_option(f):  # type: ignore[no-untyped-def]
    """``--json``: machine-readable output; also makes errors print as JSON."""

    def set_json(ctx: click.Context, _param: click.Parameter, value: bool) -> bool:
        root = ctx.find_root()
        root.ensure_object(dict)
        if value:
            root.obj["json"] = True
        return value

    return click.option("--json", "as_json", is_flag=True, callback=set_json, is_eager=True,
                        help="Machine-readable JSON on stdout.")(f)


def settings_of(ctx: click.Context) -> Settings:
    """Settings from the environment and the global flags, resolved once per invocation."""
    o = ctx.find_root().obj
    if "settings" not in o:
        o["settings"] = Settings.from_process_env(
            cache_dir=o.get("cache_dir"), endpoint=o.get("endpoint"), token_file=o.get("token_file"),
            offline=o.get("offline"), connections=o.get("connections"), chunk_size=o.get("chunk_size"),
            allow_insecure_token=o.get("allow_insecure_token"),
        )
    return o["settings"]
