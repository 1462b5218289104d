"""The ``modelcache`` command line. Errors become exit codes here, and only here.

Exit codes: 0 ok; 1 not ready / not cached / generic failure; 2 bad input; 3 the endpoint
said no (repo, revision or file not found); 4 auth or gated; 5 network (after retries);
6 integrity (bytes do not match); 7 the cache directory cannot be used.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from ..cache.access import Access
from ..errors import InvalidInput, ModelCacheError
from ..profiles import PROFILES
from ..progress import for_stream
from ..redact import install as install_redaction
from ..validation import parse_repo_ref, validate_repo_id, validate_revision
from ..service.model_cache import ModelCache
from ..settings import parse_duration
from .common import CONTEXT, json_option, settings_of
from .doctor import register as register_doctor
from .lifecycle import register as register_lifecycle
from .models import register as register_models
from .output import emit, emit_error, human_size, human_time
from .token import register as register_token

__all__ = ["cli", "main"]

class _Group(click.Group):
    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except ModelCacheError as exc:
            emit_error(exc, as_json=bool((ctx.obj or {}).get("json")))
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo("interrupted: partial files are kept and the next run resumes", err=True)
            ctx.exit(130)


_settings = settings_of  # kept for modules that import it from here


def _cache(ctx: click.Context) -> ModelCache:
    return ModelCache(_settings(ctx))


@click.group(cls=_Group, context_settings=CONTEXT)
@click.option("--cache-dir", type=click.Path(path_type=Path), help="Cache root (default: HF_HUB_CACHE, HF_HOME/hub, ~/.cache/huggingface/hub).")
@click.option("--endpoint", help="Hub or compatible server (default: HF_ENDPOINT or https://huggingface.co).")
@click.option("--token-file", type=click.Path(path_type=Path), help="File holding the access token (a mounted Secret). Never pass a token as an argument.")
@click.option("--offline", is_flag=True, default=None, help="Never touch the network (also HF_HUB_OFFLINE=1).")
@click.option("--connections", type=int, help="Parallel connections for downloads (default 16).")
@click.option("--chunk-size", type=str, help="Bytes per ranged request, e.g. 8MiB (default); big files use several connections.")
@click.option("--allow-insecure-token", is_flag=True, default=None,
              help="Send the token over plain HTTP to a non-loopback endpoint (off: it would travel in clear).")
@click.version_option(package_name="modelcache")
@click.pass_context
def cli(ctx: click.Context, cache_dir: Path | None, endpoint: str | None, token_file: Path | None,
        offline: bool | None, connections: int | None, chunk_size: str | None,
        allow_insecure_token: bool | None) -> None:
    """Keep Hugging Face model caches complete, verified and tidy."""
    ctx.ensure_object(dict)
    ctx.obj.update(cache_dir=cache_dir, endpoint=endpoint, token_file=token_file, offline=offline,
                   connections=connections, chunk_size=chunk_size, allow_insecure_token=allow_insecure_token)


@cli.command(context_settings=CONTEXT)
@click.argument("repo_id")
@click.option("--revision", default="main", show_default=True, help="Branch, tag or commit.")
@click.option("--profile", type=click.Choice(PROFILES), default="full", show_default=True,
              help="full: every file; tokenizer: config, tokenizer and generation files only.")
@click.option("--include", multiple=True, metavar="GLOB", help="Only files matching (repeatable).")
@click.option("--exclude", multiple=True, metavar="GLOB", help="Skip files matching (repeatable).")
@click.option("--repo-type", type=click.Choice(["model", "dataset", "space"]), default="model", show_default=True)
@click.option("--ref", "refs", multiple=True, metavar="NAME",
              help="Also point this branch at the commit (e.g. --revision <commit> --ref main), repeatable.")
@click.option("--quiet", "-q", is_flag=True, help="No progress output.")
@json_option
@click.pass_context
def download(ctx: click.Context, repo_id: str, revision: str, profile: str, include: tuple[str, ...],
             exclude: tuple[str, ...], repo_type: str, refs: tuple[str, ...], quiet: bool, as_json: bool) -> None:
    """Download REPO_ID into the cache, verified and resumable; print the snapshot path."""
    validate_repo_id(repo_id)
    validate_revision(revision)
    progress = None if quiet else for_stream(sys.stderr)
    with _cache(ctx) as mc:
        result = mc.download(repo_id, revision, profile=profile, include=include, exclude=exclude,
                             repo_type=repo_type, progress=progress, refs=refs)
    if result.note and not as_json:
        click.echo(f"warning: {result.note}", err=True)
    if as_json:
        emit(result.to_dict())
    else:
        if not quiet:
            click.echo(
                f"{repo_id}@{revision} → {result.commit[:12]}: {result.files} files, "
                f"{human_size(result.bytes_fetched)} fetched"
                + (f" ({human_size(result.bytes_resumed)} resumed)" if result.bytes_resumed else "")
                + f" in {result.seconds:.1f}s",
                err=True,
            )
        click.echo(str(result.snapshot))


@cli.command(context_settings=CONTEXT)
@click.argument("repo_id")
@click.option("--revision", default="main", show_default=True)
@click.option("--profile", type=click.Choice(PROFILES), default="full", show_default=True)
@click.option("--repo-type", type=click.Choice(["model", "dataset", "space"]), default="model", show_default=True)
@click.option("--wait", "wait_s", type=click.FloatRange(min=0), default=None, metavar="SECONDS",
              help="Poll until ready or SECONDS pass (for init containers).")
@click.option("--interval", type=click.FloatRange(min=0.05), default=2.0, show_default=True, help="Seconds between polls.")
@json_option
@click.pass_context
def check(ctx: click.Context, repo_id: str, revision: str, profile: str, repo_type: str,
          wait_s: float | None, interval: float, as_json: bool) -> None:
    """Is REPO_ID ready for an engine? Local disk only. Exit 0 ready, 1 not."""
    validate_repo_id(repo_id)
    validate_revision(revision)
    mc = ModelCache(_settings(ctx))
    if wait_s:
        def note(r):  # type: ignore[no-untyped-def]
            if not as_json:
                click.echo(f"waiting: {r.reason}", err=True)

        result = mc.wait(repo_id, revision, profile, repo_type, timeout=wait_s, interval=interval, on_wait=note)
    else:
        result = mc.check(repo_id, revision, profile, repo_type)
    if as_json:
        emit(result.to_dict())
    else:
        click.echo(("ready: " if result.ready else "not ready: ") + result.reason, err=not result.ready)
        for n in result.notes:
            click.echo(f"note: {n}", err=True)
        if result.ready and result.snapshot:
            click.echo(str(result.snapshot))
    ctx.exit(0 if result.ready else 1)


@cli.command(name="ls", context_settings=CONTEXT)
@click.argument("repo_id", required=False)
@click.option("--repo-type", type=click.Choice(["model", "dataset", "space"]), default="model", show_default=True)
@click.option("--root", "roots", multiple=True, type=click.Path(path_type=Path, file_okay=False),
              help="List these cache roots (repeatable, e.g. one per tenant; default: the cache dir).")
@json_option
@click.pass_context
def ls_cmd(ctx: click.Context, repo_id: str | None, repo_type: str, roots: tuple[Path, ...], as_json: bool) -> None:
    """List repos and revisions in the cache: refs, size, files, completeness, last use."""
    if repo_id is not None:
        validate_repo_id(repo_id)
    base = _settings(ctx)
    caches = [ModelCache(base.with_overrides(cache_dir=r)) for r in roots] or [ModelCache(base)]
    if as_json:
        out = [{"cache_dir": str(mc.cache_dir), "usage": mc.usage().to_dict(),
                "repos": [r.to_dict() for r in mc.ls(repo_id, repo_type)]} for mc in caches]
        emit(out if roots else out[0])
        return
    for mc in caches:
        _print_ls(mc, repo_id, repo_type, show_root=bool(roots))


def _print_ls(mc: ModelCache, repo_id: str | None, repo_type: str, show_root: bool) -> None:
    repos = mc.ls(repo_id, repo_type)
    if show_root:
        u = mc.usage()
        click.echo(f"{mc.cache_dir}: {human_size(u.used)} used"
                   + (f" of {human_size(u.budget)}" if u.budget else "") + f", {human_size(u.disk_free)} free on disk")
    if not repos:
        click.echo(f"(nothing cached{' for ' + repo_id if repo_id else ''} in {mc.cache_dir})")
        return
    rows = [("REPO", "REVISION", "REFS", "SIZE", "FILES", "STATE", "LAST USED")]
    for repo in repos:
        for r in repo.revisions:
            files = f"{r.files}/{r.expected_files}" if r.expected_files is not None else str(r.files)
            state = "complete" if r.complete else ("tokenizer" if r.tokenizer_ready else "partial")
            rows.append((repo.repo_id, r.commit[:12], ",".join(r.refs) or "-", human_size(r.size_on_disk), files,
                         state, human_time(r.last_used)))
        if not repo.revisions:
            rows.append((repo.repo_id, "-", "-", human_size(repo.size_on_disk), "0", "empty", "-"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        click.echo("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())


@cli.command(context_settings=CONTEXT)
@click.argument("ref", metavar="REPO_ID[@REV]")
@click.option("--repo-type", type=click.Choice(["model", "dataset", "space"]), default="model", show_default=True)
@click.option("--dry-run", is_flag=True, help="Show what would be removed.")
@json_option
@click.pass_context
def rm(ctx: click.Context, ref: str, repo_type: str, dry_run: bool, as_json: bool) -> None:
    """Remove a revision (REPO_ID@REV) or a whole repo; blobs shared with other revisions stay."""
    parsed = parse_repo_ref(ref)
    plan = ModelCache(_settings(ctx)).rm(parsed.repo_id, parsed.revision, repo_type, dry_run=dry_run)
    if as_json:
        emit({**plan.to_dict(), "dry_run": dry_run})
        return
    verb = "would free" if dry_run else "freed"
    click.echo(f"{'(dry run) ' if dry_run else ''}{ref}: {len(plan.commits)} revision(s), "
               f"{len(plan.blobs)} blob(s); {verb} {human_size(plan.expected_freed_size)}")


@cli.command(name="import", context_settings=CONTEXT)
@click.argument("source", metavar="DIR|BUNDLE")
@click.option("--repo", "repo_id", help="Repo id to publish a folder as, e.g. my-org/my-model (not for bundles).")
@click.option("--revision", default="main", show_default=True, help="Branch name to point at the new commit.")
@click.option("--repo-type", type=click.Choice(["model", "dataset", "space"]), default="model", show_default=True)
@click.option("--gated", is_flag=True, help="Mark the repo gated: `serve` hands its files only to allowed tokens.")
@click.option("--private", is_flag=True, help="Mark the repo private: `serve` shows nothing of it without an allowed token.")
@json_option
@click.pass_context
def import_cmd(ctx: click.Context, source: str, repo_id: str | None, revision: str, repo_type: str,
               gated: bool, private: bool, as_json: bool) -> None:
    """Publish a local model folder (deterministic commit id), or restore a bundle from `export`."""
    mc = ModelCache(_settings(ctx))
    path = Path(source)
    if source == "-" or path.is_file():
        if repo_id:
            raise InvalidInput("--repo is for folders; a bundle names its own repo", "drop --repo")
        if source == "-":
            info = mc.import_bundle(sys.stdin.buffer)
        else:
            with open(path, "rb") as fh:
                info = mc.import_bundle(fh)
        snap = mc.layout(info.repo_id, info.repo_type).snapshot(info.commit)
        if as_json:
            emit({**info.to_dict(), "snapshot": str(snap)})
        else:
            click.echo(f"restored {info.repo_id}@{info.revision} → {info.commit[:12]} "
                       f"({info.files} files, {human_size(info.size)}, verified)", err=True)
            click.echo(str(snap))
        return
    if not path.is_dir():
        raise InvalidInput(f"{source} is neither a folder nor a bundle file", "give a model folder or an exported bundle")
    if not repo_id:
        raise InvalidInput("importing a folder needs --repo", "e.g. --repo my-org/my-model")
    validate_repo_id(repo_id)
    record = mc.import_folder(path, repo_id, revision, repo_type,
                              access=Access(gated=gated, private=private) if gated or private else None)
    snap = mc.layout(repo_id, repo_type).snapshot(record.commit)
    if as_json:
        emit({"repo_id": repo_id, "revision": revision, "commit": record.commit, "files": len(record.files),
              "size": record.total_size, "snapshot": str(snap)})
    else:
        click.echo(f"imported {path} as {repo_id}@{revision} → {record.commit[:12]} "
                   f"({len(record.files)} files, {human_size(record.total_size)})", err=True)
        click.echo(str(snap))


@cli.command(context_settings=CONTEXT)
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
              help="Server processes (use the cores: e.g. 2-4); not with --upstream.")
@click.pass_context
def serve(ctx: click.Context, host: str, port: int, auth_upstream: str | None, allow_insecure_auth_upstream: bool,
          auth_tokens: Path | None, auth_ttl: str, upstream: str | None, revision_ttl: str, allow: tuple[str, ...], deny: tuple[str, ...],
          log_json: bool, workers: int) -> None:
    """Serve the cache as an HF-compatible endpoint (HF_ENDPOINT=http://HOST:PORT)."""
    from ..cache.usage import ThrottledUseRecorder
    from ..server import TokenListPolicy, UpstreamPolicy
    from ..server import serve as run_server

    if auth_upstream and auth_tokens:
        raise InvalidInput("--auth-upstream and --auth-tokens exclude each other", "choose one access policy")
    access = (UpstreamPolicy(auth_upstream, parse_duration(auth_ttl, "--auth-ttl"),
                             allow_insecure=allow_insecure_auth_upstream) if auth_upstream
              else TokenListPolicy.from_file(auth_tokens) if auth_tokens else None)
    settings = _settings(ctx)
    mirror = None
    if upstream:
        from ..hub.client import HubClient
        from ..server.mirror import Mirror

        client = HubClient.for_settings(settings, upstream.rstrip("/"), connections=32)
        mirror = Mirror(settings.cache_dir, client, ttl=parse_duration(revision_ttl, "--revision-ttl"),
                        offline=settings.offline, allow=allow, deny=deny, chunk_size=settings.chunk_size,
                        retries=settings.retries)
        settings.cache_dir.mkdir(parents=True, exist_ok=True)
    elif allow or deny:
        raise InvalidInput("--allow/--deny apply to a mirror", "add --upstream URL")
    if not settings.cache_dir.is_dir():
        raise InvalidInput(f"the cache directory {settings.cache_dir} does not exist",
                           "download or import a model first, or pass --cache-dir")
    what = f"mirroring {upstream} into {settings.cache_dir}" if upstream else f"serving {settings.cache_dir}"
    click.echo(f"{what} at http://{host}:{port} (HF_ENDPOINT=http://{host}:{port})", err=True)
    if workers > 1:
        if upstream:
            raise InvalidInput("--workers > 1 with --upstream would fetch a file once per worker",
                               "run the mirror with one worker (it streams while filling), or serve a cache")
        import uvicorn

        from .serve_worker import ENV, spec_for

        from ..server._limits import uvicorn_limits

        os.environ[ENV] = spec_for(settings.cache_dir, auth_upstream=auth_upstream, auth_tokens=auth_tokens,
                                   auth_ttl=parse_duration(auth_ttl, "--auth-ttl"), log_json=log_json,
                                   allow_insecure=allow_insecure_auth_upstream)
        uvicorn.run("modelcache.cli.serve_worker:app_factory", factory=True, host=host, port=port, workers=workers,
                    log_level="warning", access_log=False, **uvicorn_limits())  # type: ignore[arg-type]
        return
    run_server(settings.cache_dir, host=host, port=port, on_served=ThrottledUseRecorder(), access=access,
               mirror=mirror, log_json=log_json)


@cli.command(context_settings=CONTEXT)
@click.option("--workdir", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Where to put the demo caches (default: a temporary folder, removed afterwards).")
@click.pass_context
def demo(ctx: click.Context, workdir: Path | None) -> None:
    """Offline, end to end on the bundled tiny model: import, serve, download, check, list."""
    from .demo import run_demo

    ctx.exit(run_demo(workdir))


register_lifecycle(cli)
register_models(cli)
register_token(cli)
register_doctor(cli)


from .k8s import k8s  # noqa: E402

cli.add_command(k8s)


def main(argv: list[str] | None = None) -> None:
    install_redaction()
    cli.main(args=argv, prog_name="modelcache", obj={})


if __name__ == "__main__":  # pragma: no cover
    main()
