"""``modelcache doctor [REPO_ID]``: every usual failure as a check, one line each, with its fix.

Exit 0 when nothing failed (warnings allowed), 1 when a check failed, 2 on bad input.
"""

from __future__ import annotations

import click

from ..doctor import DoctorOptions, Report, run_doctor
from ..errors import InvalidInput
from ..profiles import PROFILES
from ..validation import parse_repo_ref
from .common import CONTEXT, emit, json_option, settings_of
from .token import run_checks

__all__ = ["doctor", "register"]


@click.command(context_settings=CONTEXT)
@click.argument("repo", metavar="[REPO_ID[@REV]]", required=False)
@click.option("--revision", default=None, help="Branch, tag or commit to check (default: main).")
@click.option("--profile", type=click.Choice(PROFILES), default="full", show_default=True,
              help="What the engine needs: full (weights too) or tokenizer.")
@click.option("--read-only", is_flag=True,
              help="The cache is mounted read-only on purpose (an engine pod): unwritable is fine, no write test.")
@json_option
@click.pass_context
def doctor(ctx: click.Context, repo: str | None, revision: str | None, profile: str, read_only: bool,
           as_json: bool) -> None:
    """Check token, endpoint, cache dir, filesystem, permissions, space and REPO_ID's cache state.

    Each check prints one line (ok / warn / FAIL / skip) and a fix under failures. With
    --offline (or HF_HUB_OFFLINE=1) nothing touches the network. Exit 0 if nothing failed, 1 if
    something did.
    """
    repo_id = None
    if repo is not None:
        ref = parse_repo_ref(repo)
        if ref.revision and revision and ref.revision != revision:
            raise InvalidInput(f"two revisions given: {repo} and --revision {revision}", "give one of them")
        repo_id, revision = ref.repo_id, ref.revision or revision
    options = DoctorOptions(repo_id=repo_id, revision=revision or "main", profile=profile, read_only=read_only)
    report = run_doctor(settings_of(ctx), options, token_checks=run_checks)
    if as_json:
        emit(report.to_dict())
    else:
        _print(report)
    ctx.exit(report.exit_code)


def _print(report: Report) -> None:
    c = report.context
    target = f"{c['repo_id']}@{c['revision']} (profile {c['profile']})" if c.get("repo_id") else "no repo named"
    flags = ", ".join(f for f, on in (("offline", c.get("offline")), ("read-only", c.get("read_only"))) if on)
    click.echo(f"modelcache doctor: {target}; cache {c['cache_dir']}; endpoint {c['endpoint']}"
               + (f" [{flags}]" if flags else ""))
    for f in report.findings:
        for line in f.lines():
            click.echo(line)
    click.echo(f"-- {report.summary()}")


def register(cli: click.Group) -> None:
    """Add the ``doctor`` command to ``cli``."""
    cli.add_command(doctor)
