"""``modelcache sync -f modelcache.yaml``: reconcile the cache with a declared set of models."""

from __future__ import annotations

from pathlib import Path

import click

from .common import CONTEXT, json_option, settings_of
from .output import emit

__all__ = ["register"]


@click.command(context_settings=CONTEXT)
@click.option("-f", "--file", "path", type=click.Path(path_type=Path, dir_okay=False), default=Path("modelcache.yaml"),
              show_default=True, help="The declared set of models (see `modelcache sync --schema`).")
@click.option("--dry-run", is_flag=True, help="Print the plan (what would be downloaded, pinned, freed, and why); change nothing.")
@click.option("--schema", "show_schema", is_flag=True, help="Print the JSON Schema of modelcache.yaml and exit.")
@json_option
@click.pass_context
def sync(ctx: click.Context, path: Path, dry_run: bool, show_schema: bool, as_json: bool) -> None:
    """Make the cache hold exactly what modelcache.yaml declares: download what is missing, pin
    and register what is declared, unpin what no longer is, then apply the GC policy. The plan
    is printed first; a second run with nothing changed does nothing and says so."""
    from ..progress import for_stream
    from ..service.model_cache import ModelCache
    from ..sync import load_spec
    from ..sync import sync as run_sync

    if show_schema:
        click.echo((Path(__file__).parent.parent / "sync" / "schema.json").read_text())
        return
    spec = load_spec(path)
    settings = settings_of(ctx)
    if spec.endpoint and not (ctx.find_root().obj or {}).get("endpoint"):
        settings = settings.with_overrides(endpoint=spec.endpoint)

    def show(plan) -> None:  # type: ignore[no-untyped-def]
        if not as_json:
            click.echo(f"sync {path} → {settings.cache_dir}" + (" (dry run)" if dry_run else ""), err=True)
            for line in plan.render():
                click.echo(line, err=True)

    with ModelCache(settings) as mc:
        result = run_sync(mc, spec, dry_run=dry_run, on_plan=show, progress=lambda _m: for_stream())
    if as_json:
        emit(result.to_dict())
    elif not dry_run:
        for o in result.outcomes:
            if not o.ok:
                click.echo(f"  ! {o.step.action} {o.step.target}: {o.message}", err=True)
        done = sum(1 for o in result.outcomes if o.ok)
        click.echo(f"sync: {done} step(s) done, {len(result.failed)} failed" if result.plan.changes or result.failed
                   else "sync: nothing to do", err=True)
    ctx.exit(result.exit_code)


def register(cli: click.Group) -> None:
    cli.add_command(sync)
