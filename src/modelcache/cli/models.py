"""Model manager commands: ``models add/ls/show/rm/verify/join/leave``, ``resolve`` and ``run``."""

from __future__ import annotations

import os
import sys
import time

import click

from .._format import human_time
from ..models.checksum import short
from ..models.manager import ModelManager, default_replica_id
from ..models.names import DEFAULT_KINDS, DEFAULT_NAMESPACE, ENGINES, KINDS
from ..models.runner import child_env, run_child, substitute
from ..profiles import PROFILES
from ..progress import for_stream
from ..validation import parse_repo_ref
from ..settings import parse_duration
from .common import CONTEXT, emit, json_option, settings_of

__all__ = ["register"]

_ns_option = click.option("--namespace", "-n", default=None, metavar="NS",
                          help=f"Namespace of the served name (default: {DEFAULT_NAMESPACE}).")


def _mm(ctx: click.Context) -> ModelManager:
    return ModelManager(settings_of(ctx))


@click.group(context_settings=CONTEXT)
def models() -> None:
    """Served model names → cached revisions, one card checksum per name, replicas that agree."""


@models.command("add", context_settings=CONTEXT)
@click.argument("name")
@click.option("--repo", "ref", required=True, metavar="REPO_ID[@REV]", help="The cached repo and revision it serves.")
@click.option("--kind", "kinds", multiple=True, type=click.Choice(KINDS),
              help=f"Engine kind (repeatable; default: {', '.join(DEFAULT_KINDS)}).")
@_ns_option
@click.option("--engine", type=click.Choice(ENGINES), default="other", show_default=True)
@click.option("--replace", is_flag=True, help="Replace a registration with another card (kept in its history).")
@click.option("--note", default="", help="Why (kept in the history).")
@json_option
@click.pass_context
def add(ctx: click.Context, name: str, ref: str, kinds: tuple[str, ...], namespace: str | None, engine: str,
        replace: bool, note: str, as_json: bool) -> None:
    """Register NAME as REPO_ID@REV (its tokenizer profile must be cached). A different card for a
    name already registered in the namespace is refused unless --replace."""
    r = parse_repo_ref(ref)
    out = _mm(ctx).add(name, r.repo_id, r.revision or "main", kinds=kinds or DEFAULT_KINDS,
                       namespace=namespace or DEFAULT_NAMESPACE, engine=engine, replace=replace, note=note)
    if as_json:
        emit(out.to_dict())
        return
    rec = out.record
    click.echo(f"{out.action}: {rec.namespace}/{rec.name} → {rec.repo_id}@{rec.commit[:12]} "
               f"card {short(rec.checksum)} ({','.join(rec.kinds)}; {rec.engine})")
    if out.previous is not None and out.action == "replaced":
        click.echo(f"  was {out.previous.repo_id}@{out.previous.commit[:12]} card {short(out.previous.checksum)}; "
                   "replicas still on it show as skew until drained (`modelcache models verify`)")


def _cache_state(m: dict) -> str:
    return "full" if m["cache"]["full"] else ("tokenizer" if m["cache"]["tokenizer"] else "missing")


def _replica_state(m: dict) -> str:
    n = len(m["replicas"])
    return "0" if not n else f"{n} " + ("ok" if m["agree"] and m["current"] else "SKEW")


def _print_status(status: dict, verbose: bool) -> None:
    if not status["models"]:
        click.echo(f"(no models registered in {status['cache_dir']})")
    rows = [("NAMESPACE", "NAME", "REPO@COMMIT", "ENGINE", "KINDS", "CACHE", "CARD", "REPLICAS", "STATUS")]
    for m in status["models"]:
        rows.append((m["namespace"], m["name"], f"{m['repo_id']}@{m['commit'][:12]}", m["engine"],
                     ",".join(m["kinds"]), _cache_state(m), short(m["checksum"]), _replica_state(m),
                     "ok" if m["ok"] else f"{len(m['problems'])} problem(s)"))
    if status["models"]:
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        for row in rows:
            click.echo("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
    for m in status["models"]:
        if m["problems"] or verbose:
            click.echo(f"{m['namespace']}/{m['name']}:")
        for p in m["problems"]:
            click.echo(f"  problem: {p}")
        for n in m["notes"]:
            click.echo(f"note: {m['namespace']}/{m['name']}: {n}")
        if verbose:
            for r in m["replicas"]:
                click.echo(f"  replica {r['replica']} on {r['host']} (pid {r['pid']}): card {r['card']} "
                           f"{r['repo_id']}@{r['commit'][:12]}, lease {r['lease_id']}")
    for r in status["unregistered_replicas"]:
        click.echo(f"note: replica {r['replica']} serves {r['namespace']}/{r['name']}, which is not registered")


@models.command("ls", context_settings=CONTEXT)
@click.argument("name", required=False)
@_ns_option
@click.option("--verbose", "-v", is_flag=True, help="List every replica.")
@json_option
@click.pass_context
def ls(ctx: click.Context, name: str | None, namespace: str | None, verbose: bool, as_json: bool) -> None:
    """Registered models: cache readiness, card, replicas and whether they agree (no hashing)."""
    status = _mm(ctx).status(name, namespace)
    emit(status) if as_json else _print_status(status, verbose)


@models.command("verify", context_settings=CONTEXT)
@click.argument("name", required=False)
@_ns_option
@click.option("--verbose", "-v", is_flag=True, help="List every replica.")
@json_option
@click.pass_context
def verify(ctx: click.Context, name: str | None, namespace: str | None, verbose: bool, as_json: bool) -> None:
    """Re-hash each model's card files, check the cache and the replicas. Exit 1 on any problem."""
    status = _mm(ctx).verify(name, namespace)
    if as_json:
        emit(status)
    else:
        _print_status(status, verbose)
        if status["models"]:
            click.echo("all models ok" if status["ok"] else "problems found", err=not status["ok"])
    ctx.exit(0 if status["ok"] else 1)


@models.command("show", context_settings=CONTEXT)
@click.argument("name")
@_ns_option
@json_option
@click.pass_context
def show(ctx: click.Context, name: str, namespace: str | None, as_json: bool) -> None:
    """One registration and its history (who replaced what, when)."""
    rec = _mm(ctx).get(name, namespace or DEFAULT_NAMESPACE)
    if as_json:
        emit(rec.to_json())
        return
    click.echo(f"{rec.namespace}/{rec.name}: {rec.repo_id}@{rec.commit} (from {rec.revision!r})\n"
               f"  card {rec.checksum}\n  kinds {','.join(rec.kinds)}; engine {rec.engine}; "
               f"updated {human_time(rec.updated)} by {rec.by}")
    for c in rec.history:
        old = f" (was {c.old.repo_id}@{c.old.commit[:12]} card {short(c.old.checksum)})" if c.old else ""
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(c.at))
        click.echo(f"  {stamp} UTC {c.action} by {c.by}: {c.new.repo_id}@{c.new.commit[:12]} "
                   f"card {short(c.new.checksum)}{old}" + (f" — {c.note}" if c.note else ""))


@models.command("rm", context_settings=CONTEXT)
@click.argument("name")
@_ns_option
@click.option("--force", is_flag=True, help="Even while replicas serve it.")
@json_option
@click.pass_context
def rm(ctx: click.Context, name: str, namespace: str | None, force: bool, as_json: bool) -> None:
    """Unregister NAME (the cached files stay; use `modelcache rm` for those)."""
    rec = _mm(ctx).remove(name, namespace or DEFAULT_NAMESPACE, force=force)
    emit({"removed": rec.to_json()}) if as_json else click.echo(f"removed {rec.namespace}/{rec.name}")


@models.command("join", context_settings=CONTEXT)
@click.argument("name")
@click.option("--replica", default=None, help="Replica id (default: the host name, a pod's name).")
@_ns_option
@click.option("--ttl", default="1h", show_default=True, help="Expires unless renewed (`modelcache lease renew`).")
@click.option("--force", is_flag=True, help="Join even if the files on disk give another card (shows as skew).")
@json_option
@click.pass_context
def join(ctx: click.Context, name: str, replica: str | None, namespace: str | None, ttl: str, force: bool,
         as_json: bool) -> None:
    """Join NAME as a replica: check the card on disk, take a lease carrying it; print the lease id."""
    info = _mm(ctx).join(name, replica or default_replica_id(), namespace or DEFAULT_NAMESPACE,
                         parse_duration(ttl, "--ttl"), force=force)
    emit(info.to_dict()) if as_json else click.echo(info.lease_id)


@models.command("leave", context_settings=CONTEXT)
@click.argument("name")
@click.argument("lease_id")
@_ns_option
@json_option
@click.pass_context
def leave(ctx: click.Context, name: str, lease_id: str, namespace: str | None, as_json: bool) -> None:
    """Leave NAME: release a replica's lease."""
    ok = _mm(ctx).leave(name, lease_id, namespace or DEFAULT_NAMESPACE)
    emit({"released": ok}) if as_json else click.echo("left" if ok else "no such replica (expired?)")


@click.command(context_settings=CONTEXT)
@click.argument("ref", metavar="NAME|REPO_ID[@REV]")
@_ns_option
@click.option("--profile", type=click.Choice(PROFILES), default="full", show_default=True)
@click.option("--no-card-check", is_flag=True, help="Do not re-hash a served name's card files.")
@json_option
@click.pass_context
def resolve(ctx: click.Context, ref: str, namespace: str | None, profile: str, no_card_check: bool,
            as_json: bool) -> None:
    """Print the local snapshot path of a served name or REPO_ID[@REV] if an engine can start on it now
    (local disk only): vllm serve "$(modelcache resolve llama-70b)"."""
    path = _mm(ctx).resolve(ref, namespace, profile, verify_card=not no_card_check)
    emit({"ref": ref, "snapshot": str(path)}) if as_json else click.echo(str(path))


@click.command(context_settings={**CONTEXT, "allow_interspersed_args": True})
@click.argument("ref", metavar="NAME|REPO_ID[@REV]")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED, metavar="-- CMD [ARGS]...")
@_ns_option
@click.option("--profile", type=click.Choice(PROFILES), default="full", show_default=True)
@click.option("--replica", default=None, help="Replica id when REF is a served name (default: the host name).")
@click.option("--ttl", default="60s", show_default=True, help="Lease time-to-live; renewed every ttl/3.")
@click.option("--force", is_flag=True, help="Run even if the files give another card than registered.")
@click.option("--quiet", "-q", is_flag=True, help="No progress or status lines.")
@click.pass_context
def run(ctx: click.Context, ref: str, command: tuple[str, ...], namespace: str | None, profile: str,
        replica: str | None, ttl: str, force: bool, quiet: bool) -> None:
    """Make REF ready (download, or wait for another downloader), hold a lease while CMD runs with
    HF_HUB_CACHE and HF_HUB_OFFLINE=1 set, and exit with CMD's code. An argument `{snapshot}` is
    replaced by the snapshot path (also in $MODELCACHE_SNAPSHOT)."""
    mm = _mm(ctx)
    progress = None if quiet else for_stream(sys.stderr)
    with mm.use(ref, namespace=namespace, profile=profile, replica=replica, ttl=parse_duration(ttl, "--ttl"),
                force=force, progress=progress) as ready:
        if not quiet:
            who = f" as replica of {ready.record.namespace}/{ready.record.name} (card {short(ready.card or '')})" \
                if ready.record else ""
            click.echo(f"modelcache: {ready.repo_id}@{ready.commit[:12]} ready at {ready.snapshot}; leased{who}; "
                       f"running {command[0]}", err=True)
        code = run_child(substitute(command, str(ready.snapshot)), child_env(os.environ, ready.env))
    ctx.exit(code)


def register(cli: click.Group) -> None:
    """Add the ``models``, ``resolve`` and ``run`` commands to ``cli``."""
    for cmd in (models, resolve, run):
        cli.add_command(cmd)
