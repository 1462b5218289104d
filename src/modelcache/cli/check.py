"""``modelcache check``: what an init container runs, so it imports only the cache's readiness code.

It does what ``ModelCache.check``/``wait`` do (check, record the use when ready) without
loading the HTTP stack, rich, the server or the Kubernetes client (``tests/cli/test_check_light.py``).
"""

from __future__ import annotations

import time

import click

from ..cache.layout import RepoLayout
from ..cache.readiness import check_revision
from ..cache.usage import record_use
from ..profiles import ACCEPT, PROFILES
from ..validation import validate_repo_id, validate_repo_type, validate_revision
from .common import CONTEXT, emit, json_option, settings_of

__all__ = ["check"]


@click.command(context_settings=CONTEXT)
@click.argument("repo_id")
@click.option("--revision", default="main", show_default=True,
              help="Branch, tag or commit the engine asks for (a branch or tag must be in refs/).")
@click.option("--profile", type=click.Choice(PROFILES), default="full", show_default=True,
              help="full: config, tokenizer, weights and every asked file; tokenizer: config and tokenizer.")
@click.option("--include", multiple=True, metavar="GLOB",
              help="Judge by this ask, as given to download (default: what downloads of it asked).")
@click.option("--exclude", multiple=True, metavar="GLOB", help="Idem, files skipped (repeatable).")
@click.option("--accept", multiple=True, type=click.Choice(ACCEPT), metavar="FORMAT",
              help="Also count gguf, consolidated (Mistral), adapter (LoRA) or sentencepiece files (repeatable).")
@click.option("--repo-type", type=click.Choice(["model", "dataset", "space"]), default="model", show_default=True)
@click.option("--wait", "wait_s", type=click.FloatRange(min=0), default=None, metavar="SECONDS",
              help="Poll until ready or SECONDS pass (for init containers).")
@click.option("--interval", type=click.FloatRange(min=0.05), default=2.0, show_default=True, help="Seconds between polls.")
@json_option
@click.pass_context
def check(ctx: click.Context, repo_id: str, revision: str, profile: str, include: tuple[str, ...],
          exclude: tuple[str, ...], accept: tuple[str, ...], repo_type: str, wait_s: float | None, interval: float,
          as_json: bool) -> None:
    """Is REPO_ID ready for an engine? Local disk only. Exit 0 ready, 1 not."""
    # ModelCache.check/wait, without loading the download stack (an init container runs this)
    validate_repo_id(repo_id)
    validate_revision(revision)
    validate_repo_type(repo_type)
    layout = RepoLayout(settings_of(ctx).cache_dir, repo_type, repo_id)
    asked = (include, exclude) if include or exclude else (None, None)
    deadline = time.monotonic() + (wait_s or 0.0)
    if wait_s:
        from .main import _stop_on_sigterm  # loaded already: it loaded this module

        _stop_on_sigterm(f"stopped waiting for {repo_id}: SIGTERM")
    while True:
        result = check_revision(layout, revision, profile, *asked, accept=accept)
        if result.ready or time.monotonic() >= deadline:
            break
        if not as_json:
            click.echo(f"waiting: {result.reason}", err=True)
        time.sleep(min(interval, max(0.05, deadline - time.monotonic())))
    if result.ready and result.commit:
        record_use(layout, result.commit)  # best effort: read-only mounts record nothing
    if as_json:
        emit(result.to_dict())
    else:
        click.echo(("ready: " if result.ready else "not ready: ") + result.reason, err=not result.ready)
        for n in result.notes:
            click.echo(f"note: {n}", err=True)
        if result.ready and result.snapshot:
            click.echo(str(result.snapshot))
    ctx.exit(0 if result.ready else 1)
