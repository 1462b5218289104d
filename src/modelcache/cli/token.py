"""``modelcache token check [REPO_ID]``: is the token there, valid, and allowed to read the repo?"""

from __future__ import annotations

from dataclasses import dataclass

import click

from ..errors import (
    AuthError,
    EndpointUnreachable,
    GatedRepo,
    HubError,
    ModelCacheError,
    RepoNotFound,
)
from ..hub.client import HubClient
from ..validation import parse_repo_ref
from .common import CONTEXT, emit, json_option, settings_of

__all__ = ["register"]


@dataclass
class Check:
    name: str
    ok: bool
    message: str
    fix: str = ""
    warn: bool = False

    def to_dict(self) -> dict[str, object]:
        return dict(self.__dict__)


def run_checks(settings, repo: str | None) -> list[Check]:  # type: ignore[no-untyped-def]
    checks: list[Check] = []
    report = settings.token.inspect()
    where = f"{report.origin}" + (f" ({report.file})" if report.file else "")
    if report.present:
        checks.append(Check("token", True, f"token found via {where}"))
    else:
        # public repos need no token: a warning, not a failure (a repo given is checked below)
        checks.append(Check("token", True, f"no token ({where if settings.token.configured else 'none set'}): "
                            "public repos only",
                            "for gated or private repos: set HF_TOKEN, pass --token-file, or mount the Secret at "
                            "/var/run/secrets/huggingface", warn=True))
    for note in report.notes:
        checks.append(Check("token-file", "readable by every user" not in note, note,
                            "chmod 600 the token file" if "readable" in note else ""))
    client = HubClient.for_settings(settings, timeout=min(settings.timeout, 15.0))
    try:
        if report.present:
            client.auth_headers(settings.endpoint + "/")
            if client.token_withheld:
                checks.append(Check("transport", False, f"the token is not sent to {settings.endpoint}: plain HTTP, "
                                    "not loopback", "use https, or --allow-insecure-token on a trusted network"))
            try:
                who = client.whoami()
                role = (who.get("auth") or {}).get("accessToken", {}).get("role") if isinstance(who.get("auth"), dict) else None
                checks.append(Check("valid", True, f"token valid: {who.get('name', '?')}" + (f" (role {role})" if role else "")))
            except (RepoNotFound, AuthError):
                checks.append(Check("valid", False, "the endpoint rejects the token (invalid, revoked or expired)",
                                    "create a new token in your Hub account settings and update the Secret / HF_TOKEN"))
            except HubError as exc:
                checks.append(Check("valid", True, f"cannot check validity at this endpoint ({exc.message})"))
        if repo:
            ref = parse_repo_ref(repo)
            rev = ref.revision or "main"
            try:
                info = client.revision_info("model", ref.repo_id, rev)
                kind = "gated" if info.gated else "private" if info.private else "public"
                try:
                    client.head_file("model", ref.repo_id, info.commit, "config.json")
                    checks.append(Check("repo", True, f"can read {ref.repo_id}@{rev} ({kind})"))
                except GatedRepo:
                    checks.append(Check("repo", False, f"{ref.repo_id} is gated and this token has not been granted access",
                                        f"open {settings.endpoint}/{ref.repo_id} with the token's account and accept the conditions"))
                except (AuthError, RepoNotFound) as exc:
                    checks.append(Check("repo", False, f"cannot read {ref.repo_id}: {exc.message}", exc.hint))
                except HubError:
                    checks.append(Check("repo", True, f"{ref.repo_id}@{rev} is visible ({kind}); it has no config.json"))
            except GatedRepo:
                checks.append(Check("repo", False, f"{ref.repo_id} is gated and this token has no access",
                                    f"accept the conditions at {settings.endpoint}/{ref.repo_id}"))
            except RepoNotFound as exc:
                checks.append(Check("repo", False, f"{ref.repo_id} not found, or private and not readable with this token",
                                    exc.hint))
    except EndpointUnreachable as exc:
        checks.append(Check("endpoint", False, exc.message, exc.hint))
    except ModelCacheError as exc:
        checks.append(Check("endpoint", False, exc.message, exc.hint))
    finally:
        client.close()
    return checks


@click.group(context_settings=CONTEXT)
def token() -> None:
    """Check the access token (it is never printed)."""


@token.command("check", context_settings=CONTEXT)
@click.argument("repo", metavar="[REPO_ID[@REV]]", required=False)
@json_option
@click.pass_context
def token_check(ctx: click.Context, repo: str | None, as_json: bool) -> None:
    """Token present, valid (whoami), and allowed to read REPO_ID — each with the fix in one line."""
    checks = run_checks(settings_of(ctx), repo)
    ok = all(c.ok for c in checks)
    if as_json:
        emit({"ok": ok, "checks": [c.to_dict() for c in checks]})
    else:
        for c in checks:
            label = "FAIL" if not c.ok else "warn" if c.warn else "ok  "
            click.echo(f"{label} {c.message}" + (f"\n     fix: {c.fix}" if c.fix and (c.warn or not c.ok) else ""))
    ctx.exit(0 if ok else 4)


def register(cli: click.Group) -> None:
    """Add the ``token`` command group to ``cli``."""
    cli.add_command(token)
