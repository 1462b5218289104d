"""``modelcache serve``: the cache (or a read-through mirror of a Hub) as an HF-compatible endpoint."""

from __future__ import annotations

import os
from pathlib import Path

import click

from ..files import shared_mkdir
from ..settings import parse_duration
from .common import CONTEXT, json_option, settings_of

__all__ = ["register"]


@click.command(context_settings=CONTEXT)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=click.IntRange(0, 65535), default=8080, show_default=True)
@click.option("--auth-upstream", metavar="URL",
              help="Check callers' tokens for gated/private repos against this Hub (e.g. https://huggingface.co).")
@click.option("--allow-insecure-auth-upstream", is_flag=True,
              help="Allow a plain-http --auth-upstream on another host (callers' tokens cross the network in clear).")
@click.option("--auth-tokens", type=click.Path(path_type=Path, dir_okay=False, exists=True),
              help="Air-gapped: a file of allowed tokens (one per line, or sha256:<hex>) for gated/private repos.")
@click.option("--auth-ttl", default="5m", show_default=True, help="How long an upstream access decision is cached.")
@click.option("--upstream", metavar="URL", help="Read-through mirror: fetch what the cache misses from this Hub.")
@click.option("--revision-ttl", default="60s", show_default=True, help="Mirror: how long a revision lookup is trusted.")
@click.option("--allow", multiple=True, metavar="PATTERN", help="Mirror: serve only repos matching (repeatable, e.g. 'Qwen/*').")
@click.option("--deny", multiple=True, metavar="PATTERN", help="Mirror: never serve repos matching (repeatable).")
@click.option("--log-json", is_flag=True, help="One JSON line per request on stderr (method, path, status, bytes, ms).")
@click.option("--workers", type=click.IntRange(1, 64), default=1, show_default=True,
              help="Server processes (use the cores: e.g. 2-4). Mirror workers and replicas share fills "
                   "through the cache's lock files.")
@json_option
@click.pass_context
def serve(ctx: click.Context, host: str, port: int, auth_upstream: str | None, allow_insecure_auth_upstream: bool,
          auth_tokens: Path | None,
          auth_ttl: str, upstream: str | None, revision_ttl: str, allow: tuple[str, ...], deny: tuple[str, ...],
          log_json: bool, workers: int, as_json: bool) -> None:
    """Serve the cache as an HF-compatible endpoint (HF_ENDPOINT=http://HOST:PORT)."""
    from ..server import serve as run_server
    from ..server.config import ENV, ServeSpec, build_app

    spec = ServeSpec(auth_upstream=auth_upstream, allow_insecure_auth_upstream=allow_insecure_auth_upstream,
                     auth_tokens=str(auth_tokens) if auth_tokens else None,
                     auth_ttl=parse_duration(auth_ttl, "--auth-ttl"), upstream=upstream,
                     revision_ttl=parse_duration(revision_ttl, "--revision-ttl"), allow=allow, deny=deny,
                     log_json=log_json, settings=_overrides(ctx))
    settings = settings_of(ctx)
    if not settings.cache_dir.is_dir():  # a fresh volume: the download Job may not have run yet
        try:
            shared_mkdir(settings.cache_dir)
        except OSError as exc:
            click.echo(f"warning: the cache directory {settings.cache_dir} does not exist and cannot be created "
                       f"({exc.strerror}); /readyz answers 503 until it does", err=True)
    what = f"mirroring {upstream} into {settings.cache_dir}" if upstream else f"serving {settings.cache_dir}"
    if as_json:  # the start-up line, one JSON line on stdout for a supervisor to parse
        import json

        click.echo(json.dumps({"event": "serving", "url": f"http://{host}:{port}", "cache_dir": str(settings.cache_dir),
                               "upstream": upstream, "workers": workers}))
    else:
        click.echo(f"{what} at http://{host}:{port} (HF_ENDPOINT=http://{host}:{port})", err=True)
    if workers > 1:
        os.environ[ENV] = spec.to_json()  # each worker process builds the same app from it
        run_server(None, host=host, port=port, workers=workers, log_json=log_json)
        return
    run_server(build_app(spec, settings), host=host, port=port, log_json=log_json)


def _overrides(ctx: click.Context) -> dict[str, object]:
    o = ctx.find_root().obj or {}
    keys = ("cache_dir", "endpoint", "token_file", "offline", "connections", "chunk_size", "allow_insecure_token")
    return {k: (str(o[k]) if isinstance(o[k], Path) else o[k]) for k in keys if o.get(k) is not None}


def register(cli: click.Group) -> None:
    """Add the ``serve`` command to ``cli``."""
    cli.add_command(serve)
