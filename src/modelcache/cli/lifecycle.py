"""Lifecycle commands: lease, pin/unpin, gc, verify, quota, export (and bundle import)."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import click

from .._format import human_size, human_time
from ..errors import InvalidInput, NotCached
from ..profiles import PROFILES
from ..validation import parse_repo_ref
from ..service.model_cache import ModelCache
from ..settings import parse_duration, parse_size
from .common import CONTEXT, emit, json_option, settings_of

__all__ = ["register"]


def _mc(ctx: click.Context) -> ModelCache:
    return ModelCache(settings_of(ctx))


@click.group(context_settings=CONTEXT)
def lease() -> None:
    """Mark a revision as in use (GC never removes a leased revision)."""


@lease.command("acquire", context_settings=CONTEXT)
@click.argument("ref", metavar="REPO_ID[@REV]")
@click.option("--holder", default="", help="Who holds it (pod name, job id).")
@click.option("--ttl", default="1h", show_default=True, help="Expires unless renewed: 90, 30m, 12h.")
@json_option
@click.pass_context
def lease_acquire(ctx: click.Context, ref: str, holder: str, ttl: str, as_json: bool) -> None:
    """Take a lease on REPO_ID[@REV] (default main); print its id. GC keeps the revision until it expires."""
    r = parse_repo_ref(ref)
    info = _mc(ctx).acquire_lease(r.repo_id, r.revision or "main", holder, parse_duration(ttl, "--ttl"))
    emit(info.to_dict()) if as_json else click.echo(info.lease_id)


@lease.command("renew", context_settings=CONTEXT)
@click.argument("args", nargs=-1, required=True, metavar="[REPO_ID] LEASE_ID")
@click.option("--ttl", default="1h", show_default=True, help="New time to live from now: 90, 30m, 12h.")
@json_option
@click.pass_context
def lease_renew(ctx: click.Context, args: tuple[str, ...], ttl: str, as_json: bool) -> None:
    """Extend a lease (by its id alone, or REPO_ID LEASE_ID)."""
    mc = _mc(ctx)
    repo_id, lease_id = _lease_target(mc, args)
    info = mc.renew_lease(repo_id, lease_id, parse_duration(ttl, "--ttl"))
    emit(info.to_dict()) if as_json else click.echo(f"renewed until {time.ctime(info.expires)}")


@lease.command("release", context_settings=CONTEXT)
@click.argument("args", nargs=-1, required=True, metavar="[REPO_ID] LEASE_ID")
@json_option
@click.pass_context
def lease_release(ctx: click.Context, args: tuple[str, ...], as_json: bool) -> None:
    """Give a lease back (by its id alone, or REPO_ID LEASE_ID)."""
    mc = _mc(ctx)
    try:
        repo_id, lease_id = _lease_target(mc, args)
    except NotCached:
        repo_id, lease_id = "", ""
    ok = bool(lease_id) and mc.release_lease(repo_id, lease_id)
    emit({"released": ok}) if as_json else click.echo("released" if ok else "no such lease (expired?)")


@lease.command("ls", context_settings=CONTEXT)
@click.argument("repo_id", required=False)
@json_option
@click.pass_context
def lease_ls(ctx: click.Context, repo_id: str | None, as_json: bool) -> None:
    """List active leases (of REPO_ID, or of every repo)."""
    leases = _mc(ctx).leases(parse_repo_ref(repo_id).repo_id if repo_id else None)
    if as_json:
        emit([lease.to_dict() for lease in leases])
        return
    for le in leases:
        click.echo(f"{le.lease_id}  {le.repo_id}@{le.commit[:12]}  {le.holder}  "
                   f"expires in {max(0, int(le.expires - time.time()))}s")
    if not leases:
        click.echo("(no active leases)")


def _lease_target(mc: ModelCache, args: tuple[str, ...]) -> tuple[str, str]:
    """``(repo_id, lease_id)`` from ``LEASE_ID`` (looked up among active leases) or ``REPO_ID LEASE_ID``."""
    if len(args) == 2:
        return parse_repo_ref(args[0]).repo_id, args[1]
    if len(args) != 1:
        raise InvalidInput("give LEASE_ID, or REPO_ID LEASE_ID", "see `modelcache lease ls`")
    found = [le for le in mc.leases() if le.lease_id == args[0]]
    if not found:
        raise NotCached(f"no active lease {args[0]}", "see `modelcache lease ls` (it may have expired)")
    return found[0].repo_id, args[0]


def _pin_command(name: str, pinned: bool, doc: str) -> click.Command:
    @click.command(name=name, context_settings=CONTEXT, help=doc)
    @click.argument("ref", metavar="REPO_ID@REV")
    @json_option
    @click.pass_context
    def command(ctx: click.Context, ref: str, as_json: bool) -> None:
        r = parse_repo_ref(ref)
        mc = _mc(ctx)
        commit = (mc.pin if pinned else mc.unpin)(r.repo_id, r.revision or "main")
        if as_json:
            emit({"repo_id": r.repo_id, "commit": commit, "pinned": pinned})
        else:
            click.echo(f"{name}ned {r.repo_id}@{commit}")

    return command


pin = _pin_command("pin", True, "Pin a revision: GC never removes it.")
unpin = _pin_command("unpin", False, "Remove a pin.")


@click.command(context_settings=CONTEXT)
@click.option("--max-size", help="Shrink the cache to this size (default: the root's budget, if set).")
@click.option("--max-age", help="Remove revisions unused for this long: 30m, 12h, 7d.")
@click.option("--keep-last", type=int, help="Keep at most N most recently used revisions per repo.")
@click.option("--dry-run", is_flag=True, help="Show what would be removed, remove nothing.")
@click.option("--root", "roots", multiple=True, type=click.Path(path_type=Path, file_okay=False),
              help="Collect in these cache roots (repeatable; default: the cache dir).")
@click.option("--k8s-namespace", "namespaces", multiple=True, metavar="NS",
              help="Keep every revision a live pod in NS uses (pods labelled modelcache.io/consumer=true, "
                   "annotated with repo-id and commit); repeatable. Needs RBAC to list pods.")
@click.option("--kubeconfig", type=click.Path(dir_okay=False), default=None,
              help="With --k8s-namespace: the kubeconfig (default: KUBECONFIG, ~/.kube/config, or in-cluster).")
@click.option("--context", "kube_context", default=None, help="With --k8s-namespace: the kubeconfig context.")
@json_option
@click.pass_context
def gc(ctx: click.Context, max_size: str | None, max_age: str | None, keep_last: int | None, dry_run: bool,
       roots: tuple[Path, ...], namespaces: tuple[str, ...], kubeconfig: str | None, kube_context: str | None,
       as_json: bool) -> None:
    """Collect least recently used revisions; never a pinned, leased, in-progress or registered one, nor one a
    live pod uses (--k8s-namespace). Empty repo folders go too."""
    in_use = None
    if namespaces:
        import os

        from ..k8s.pods import InCluster, list_pod_uses
        from ..k8s.pods import in_use as protection

        in_cluster = InCluster.from_env(os.environ)  # in the CronJob's pod: its ServiceAccount
        notes: list[str] = []

        def in_use() -> dict[tuple[str, str], str]:  # asked before planning and again before removing
            uses, found = list_pod_uses(namespaces, kubeconfig=kubeconfig, context=kube_context, in_cluster=in_cluster)
            notes[:] = found
            return protection(uses)

    elif kubeconfig or kube_context:
        raise InvalidInput("--kubeconfig/--context are for --k8s-namespace", "add --k8s-namespace NS")
    report = _mc(ctx).gc(
        max_size=parse_size(max_size, "--max-size") if max_size else None,
        max_age=parse_duration(max_age, "--max-age") if max_age else None,
        keep_last=keep_last, dry_run=dry_run, roots=list(roots) or None, in_use=in_use,
    )
    if namespaces and not as_json:
        for n in notes:
            click.echo(f"note: {n}", err=True)
    if as_json:
        emit(report.to_dict())
        return
    plan = report.plan
    verb = "would remove" if dry_run else "removed"
    for d in plan.remove:
        r = d.revision
        click.echo(f"{verb} {r.repo_id}@{r.commit[:12]} ({','.join(r.refs) or 'no ref'}, "
                   f"last used {human_time(r.last_used)}): frees {human_size(d.freed)} — {d.reason}")
    for r, why in plan.kept:
        click.echo(f"kept {r.repo_id}@{r.commit[:12]}: {why}")
    for root, counts in report.swept.items():
        parts = [f"{v} {k.replace('_', ' ')}" for k, v in counts.items() if v and not k.endswith("bytes")]
        if parts:
            click.echo(f"{'would sweep' if dry_run else 'swept'} in {root}: {', '.join(parts)}")
    for s in report.skipped:
        click.echo(s)
    for n in plan.notes:
        click.echo(f"note: {n}")
    click.echo(f"{'would free' if dry_run else 'freed'} {human_size(plan.freed)}: "
               f"{human_size(plan.size_before)} → {human_size(plan.size_after)}"
               + (f" (budget {human_size(plan.max_size)})" if plan.max_size else ""))


@click.command(context_settings=CONTEXT)
@click.argument("ref", metavar="[REPO_ID[@REV]]", required=False)
@click.option("--repair", is_flag=True, help="Re-fetch only the missing, wrong-size and corrupt files.")
@click.option("--profile", type=click.Choice(PROFILES), default=None,
              help="Check the files of this profile (default: what the downloads of each revision asked).")
@json_option
@click.pass_context
def verify(ctx: click.Context, ref: str | None, repair: bool, profile: str | None, as_json: bool) -> None:
    """Re-hash cached files against the completeness record, each revision by what was asked of it.
    Exit 1 on any problem."""
    r = parse_repo_ref(ref) if ref else None
    reports = _mc(ctx).verify(r.repo_id if r else None, r.revision if r else None, repair=repair, profile=profile)
    bad = [rep for rep in reports if not rep.ok]
    if as_json:
        emit([rep.to_dict() for rep in reports])
    else:
        for rep in reports:
            state = "ok" if rep.ok else ("no completeness record" if not rep.has_record else "PROBLEMS")
            click.echo(f"{rep.repo_id}@{rep.commit[:12]}: {rep.checked} files, {human_size(rep.bytes_hashed)} hashed: {state}")
            for p in rep.problems:
                click.echo(f"  {p.kind}: {p.path} ({p.detail})")
        if bad and not repair:
            click.echo("hint: `modelcache verify --repair` re-fetches only the bad files", err=True)
    ctx.exit(1 if bad else 0)


@click.group(context_settings=CONTEXT)
def quota() -> None:
    """A size budget for a cache root, enforced at download and by gc."""


@quota.command("set", context_settings=CONTEXT)
@click.argument("size")
@json_option
@click.pass_context
def quota_set(ctx: click.Context, size: str, as_json: bool) -> None:
    """Set the cache root's budget to SIZE (e.g. 500GiB; 'none' removes it). Downloads that would exceed it
    are refused; gc shrinks to it."""
    mc = _mc(ctx)
    mc.set_budget(None if size in ("none", "off") else parse_size(size, "budget"))
    u = mc.usage()
    emit(u.to_dict()) if as_json else click.echo(f"budget {human_size(u.budget) if u.budget else 'none'}; "
                                                 f"used {human_size(u.used)}")


@quota.command("show", context_settings=CONTEXT)
@click.option("--root", "roots", multiple=True, type=click.Path(path_type=Path, file_okay=False),
              help="Show these cache roots (repeatable; default: the cache dir).")
@json_option
@click.pass_context
def quota_show(ctx: click.Context, roots: tuple[Path, ...], as_json: bool) -> None:
    """Show used bytes, budget and free disk of the cache root (or each --root)."""
    mc = _mc(ctx)
    usages = {str(r): mc.usage(r) for r in (roots or [mc.cache_dir])}
    if as_json:
        emit({root: u.to_dict() for root, u in usages.items()})
        return
    for root, u in usages.items():
        click.echo(f"{root}: used {human_size(u.used)}, budget {human_size(u.budget) if u.budget else 'none'}, "
                   f"disk free {human_size(u.disk_free)}")


@click.command(context_settings=CONTEXT)
@click.argument("ref", metavar="REPO_ID[@REV]")
@click.option("--output", "-o", required=True, help="Bundle file to write ('-' for stdout).")
@json_option
@click.pass_context
def export(ctx: click.Context, ref: str, output: str, as_json: bool) -> None:
    """Write one bundle (files + completeness record) for backup or an air-gapped transfer."""
    r = parse_repo_ref(ref)
    mc = _mc(ctx)
    if output == "-":
        info = mc.export(r.repo_id, r.revision or "main", sys.stdout.buffer)
    else:
        from ..files import create_exclusive

        out = Path(output)
        # O_EXCL|O_NOFOLLOW under an unpredictable name: a link planted at a fixed temp name
        # (e.g. in a shared folder) is never written through
        fd, tmp = create_exclusive(out.parent, f".{out.name}.", ".partial", 0o644)
        try:
            with os.fdopen(fd, "wb") as fh:
                info = mc.export(r.repo_id, r.revision or "main", fh)
            os.replace(tmp, out)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    msg = f"exported {info.repo_id}@{info.revision} ({info.commit[:12]}): {info.files} files, {human_size(info.size)}"
    emit(info.to_dict()) if as_json else click.echo(msg, err=True)


def register(cli: click.Group) -> None:
    """Add the ``lease``, ``pin``, ``unpin``, ``gc``, ``verify``, ``quota`` and ``export`` commands to ``cli``."""
    for cmd in (lease, pin, unpin, gc, verify, quota, export):
        cli.add_command(cmd)
