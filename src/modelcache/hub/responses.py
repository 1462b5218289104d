"""Turning the Hub's answers into errors: HF's ``X-Error-Code`` first, the status second."""

from __future__ import annotations

import httpx

from ..errors import (
    AuthError,
    EntryNotFound,
    GatedRepo,
    HubError,
    ProtocolError,
    RepoNotFound,
    RevisionNotFound,
    TransientError,
)

__all__ = ["error_for_response", "parse_retry_after"]


def parse_retry_after(value: str | None) -> float | None:
    """``Retry-After`` in seconds, clamped to 0–300; None when absent or not a number (HTTP dates included)."""
    if not value:
        return None
    try:
        return max(0.0, min(float(value), 300.0))
    except ValueError:
        return None


def error_for_response(resp: httpx.Response, what: str, repo_id: str, revision: str | None = None,
                       repo_known: bool = False) -> HubError | TransientError:
    """Turn a non-2xx answer into the right error (HF's ``X-Error-Code`` first, status second).

    A bare 401 reads as "no such repo, or no access" (the Hub's answer for private repos),
    unless the repo is already known to exist (``repo_known``): then the token was refused.
    """
    code = resp.headers.get("X-Error-Code", "")
    status = resp.status_code
    rev = f"@{revision}" if revision else ""
    if code == "RepoNotFound" or (status == 401 and code == "" and not repo_known):
        return RepoNotFound(
            f"{repo_id} was not found at the endpoint, or the token may not read it (HTTP {status})",
            "check the repo id; for a private or gated repo set HF_TOKEN or --token-file",
        )
    if code == "RevisionNotFound":
        return RevisionNotFound(
            f"revision {revision!r} of {repo_id} does not exist (HTTP {status})",
            "check the branch, tag or commit id (`--revision`)",
        )
    if code == "EntryNotFound":
        return EntryNotFound(f"{what} not found in {repo_id}{rev} (HTTP {status})", "check the file name")
    if code == "GatedRepo":
        return GatedRepo(
            f"{repo_id} is gated: this token has not been granted access (HTTP {status})",
            "accept the conditions on the repo page with the token's account, then retry",
        )
    if status in (401, 403):
        return AuthError(
            f"access to {what} of {repo_id} denied (HTTP {status})",
            "check the token: `modelcache doctor`, or set HF_TOKEN / --token-file",
        )
    if status == 404:
        return RepoNotFound(
            f"{what} of {repo_id}{rev} not found (HTTP 404 without an X-Error-Code)",
            "check the repo id and revision; is the endpoint an HF-compatible server?",
        )
    if status == 429 or status >= 500:
        return TransientError(
            f"the endpoint answered HTTP {status} for {what} of {repo_id}",
            "the endpoint is busy or failing; retry later",
            retry_after=parse_retry_after(resp.headers.get("Retry-After")),
        )
    return ProtocolError(f"unexpected HTTP {status} for {what} of {repo_id}", "is the endpoint HF-compatible?")
