"""The ``modelcache`` command line. Errors become exit codes here, and only here.

Exit codes: 0 ok; 1 not ready / not cached / generic failure; 2 bad input; 3 the endpoint
said no (repo, revision or file not found); 4 auth or gated; 5 network (after retries);
6 integrity (bytes do not match); 7 the cache directory cannot be used.
"""

from __future__ import annotations

import atexit
import importlib
import os
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import click

from ..errors import InvalidInput, ModelCacheError
from ..profiles import PROFILES
from ..validation import parse_repo_ref, validate_repo_id, validate_revision
from .common import CONTEXT, json_option, settings_of
from .output import emit, emit_error, human_size, human_time

if TYPE_CHECKING:
    from ..service.model_cache import ModelCache

__all__ = ["cli", "main"]

# Commands defined elsewhere, imported only when run (or listed by --help): `check` in an init
# container must not pay for the HTTP stack, rich, the server or the Kubernetes client.
_LAZY = {
    "lease": "lifecycle:lease", "pin": "lifecycle:pin", "unpin": "lifecycle:unpin", "gc": "lifecycle:gc",
    "verify": "lifecycle:verify", "quota": "lifecycle:quota", "export": "lifecycle:export",
    "models": "models:models", "resolve": "models:resolve", "run": "models:run",
    "token": "token:token", "doctor": "doctor:doctor", "k8s": "k8s:k8s", "check": "check:check",
    "serve": "serve:serve", "sync": "sync:sync",
}


class _Group(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *_LAZY})

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        cmd = super().get_command(ctx, name)
        if cmd is None and name in _LAZY:
            module, attr = _LAZY[name].split(":")
            cmd = getattr(importlib.import_module(f"{__package__}.{module}"), attr)
        return cmd

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except ModelCacheError as exc:
            if (ctx.obj or {}).get("offline") and "unset HF_HUB_OFFLINE" in exc.hint:  # the flag, not the variable
                exc.hint = exc.hint.replace("unset HF_HUB_OFFLINE", "drop --offline")
            emit_error(exc, as_json=bool((ctx.obj or {}).get("json")))
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo("interrupted: partial files are kept and the next run resumes", err=True)
            ctx.exit(130)


_settings = settings_of


def _stop_on_sigterm(message: str, hard: bool = False) -> None:
    """Exit at once (143) on SIGTERM. As PID 1 of a container (an init container's ``check
    --wait``) a process without a handler ignores SIGTERM, and the pod takes its whole grace
    period to go away. ``hard``: ``os._exit``, not waiting for worker threads (a download is
    safe to stop at any point, as after SIGKILL: it resumes)."""
    import signal

    def stop(_signum: int, _frame: object) -> None:
        click.echo(message, err=True)
        if hard:
            sys.stderr.flush()
            os._exit(143)
        raise SystemExit(143)

    signal.signal(signal.SIGTERM, stop)


def _cache(ctx: click.Context) -> ModelCache:
    from ..service.model_cache import ModelCache

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
    from ..progress import for_stream

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


@cli.command(name="ls", context_settings=CONTEXT)
@click.argument("repo_id", required=False)
@click.option("--repo-type", type=click.Choice(["model", "dataset", "space"]), default="model", show_default=True)
@click.option("--root", "roots", multiple=True, type=click.Path(path_type=Path, file_okay=False),
              help="List these cache roots (repeatable, e.g. one per tenant; default: the cache dir).")
@json_option
@click.pass_context
def ls_cmd(ctx: click.Context, repo_id: str | None, repo_type: str, roots: tuple[Path, ...], as_json: bool) -> None:
    """List repos and revisions in the cache: refs, size, files, state, pins, last use, what was asked."""
    if repo_id is not None:
        validate_repo_id(repo_id)
    from ..service.model_cache import ModelCache

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
    rows = [("REPO", "REVISION", "REFS", "SIZE", "FILES", "STATE", "PINNED", "LAST USED", "ASKED")]
    for repo in repos:
        for r in repo.revisions:
            files = f"{r.files}/{r.expected_files}" if r.expected_files is not None else str(r.files)
            rows.append((repo.repo_id, r.commit[:12], ",".join(r.refs) or "-", human_size(r.size_on_disk), files,
                         r.state, "pinned" if r.pinned else "-", human_time(r.last_used), r.asked or "-"))
        if not repo.revisions:
            rows.append((repo.repo_id, "-", "-", human_size(repo.size_on_disk), "0", "empty", "-", "-", "-"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        click.echo("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())


@cli.command(context_settings=CONTEXT)
@click.argument("ref", metavar="REPO_ID[@REV]")
@click.option("--repo-type", type=click.Choice(["model", "dataset", "space"]), default="model", show_default=True)
@click.option("--dry-run", is_flag=True, help="Show what would be removed.")
@click.option("--force", is_flag=True, help="Remove even a revision that is pinned, leased, registered or downloading.")
@json_option
@click.pass_context
def rm(ctx: click.Context, ref: str, repo_type: str, dry_run: bool, force: bool, as_json: bool) -> None:
    """Remove a revision (REPO_ID@REV) or a whole repo; blobs shared with other revisions stay.

    A revision in use (pinned, leased, registered, downloading) is refused unless --force."""
    parsed = parse_repo_ref(ref)
    plan = _cache(ctx).rm(parsed.repo_id, parsed.revision, repo_type, dry_run=dry_run, force=force)
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
    from ..cache.access import Access

    mc = _cache(ctx)
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
@click.option("--workdir", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Where to put the demo caches (default: a temporary folder, removed afterwards).")
@json_option
@click.pass_context
def demo(ctx: click.Context, workdir: Path | None, as_json: bool) -> None:
    """Offline, end to end on the bundled tiny model: import, serve, download, check, list."""
    import contextlib

    from .demo import run_demo

    if not as_json:
        ctx.exit(run_demo(workdir))
    with contextlib.redirect_stdout(sys.stderr):  # the steps go to stderr, the verdict to stdout
        code = run_demo(workdir)
    emit({"ok": code == 0, "exit_code": code, "workdir": str(workdir) if workdir else None})
    ctx.exit(code)


def main(argv: list[str] | None = None) -> None:
    """The ``modelcache`` entry point: install redaction, then run the CLI on ``argv`` (default: ``sys.argv``).

    Exits the process with the command's exit code. As PID 1, SIGTERM stops it.
    """
    from ..redact import install as install_redaction

    install_redaction()
    if os.getpid() == 1:  # a container's PID 1 without an init: SIGTERM would be ignored
        _stop_on_sigterm("stopped: SIGTERM (partial files are kept; the next run resumes)", hard=True)
    cli.main(args=argv, prog_name="modelcache", obj={})


def run() -> NoReturn:
    """The ``modelcache`` console script: ``main()``, then leave without tearing the interpreter down.

    Python's own exit clears every module and object one by one: 30-70 ms of a ``check`` probe or
    a download with ~400 modules loaded, spent after the work is done and the result printed.
    Here the exit handlers still run (logging flushed, executors joined), standard output and
    error are flushed, and the process ends with the command's status. Only when a non-daemon
    thread is still running does the exit take Python's usual path, which waits for it.
    ``main()`` itself raises ``SystemExit`` as before (in-process callers and tests)."""
    try:
        main()
        code: object = 0
    except SystemExit as exc:
        code = exc.code
    if any(t.is_alive() and not t.daemon for t in threading.enumerate() if t is not threading.main_thread()):
        raise SystemExit(code)
    status = _exit_status(code)
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError, AttributeError):
            status = status or 120  # what Python exits with when flushing stdout fails at exit
    os._exit(status)


def _exit_status(code: object) -> int:
    """The process status ``sys.exit(code)`` gives: None 0, an int itself, anything else printed and 1."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    try:
        print(code, file=sys.stderr)
    except (OSError, ValueError):
        pass
    return 1


if __name__ == "__main__":  # pragma: no cover
    run()
