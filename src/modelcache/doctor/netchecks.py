"""The network-side findings, as pure functions: why an endpoint cannot be reached (one clear
line per cause), and the token checks of ``modelcache token check`` read as doctor findings."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol
from urllib.parse import urlsplit

from ..tokens import TokenReport
from .findings import Finding

__all__ = ["TokenCheck", "classify_unreachable", "local_token_findings", "token_findings"]

TOKEN_FIX = "set HF_TOKEN, pass --token-file, or mount the Secret at /var/run/secrets/huggingface"
_ENDPOINT_HINT = "check HF_ENDPOINT / --endpoint"


class TokenCheck(Protocol):
    """What ``cli.token.run_checks`` returns: name, ok, message, fix."""

    name: str
    ok: bool
    message: str
    fix: str


_DNS = ("name or service not known", "nodename nor servname", "temporary failure in name resolution",
        "getaddrinfo", "no address associated", "name resolution", "errno -2", "errno -3", "errno -5")
_REFUSED = ("connection refused", "errno 111", "errno 61", "actively refused")
_TLS = ("ssl", "tls", "certificate", "handshake")
_TIMEOUT = ("timed out", "timeout")
_ROUTE = ("network is unreachable", "no route to host", "errno 101", "errno 113", "host is unreachable")
_RESET = ("connection reset", "server disconnected", "remote end closed", "connection aborted")


def _host(endpoint: str) -> str:
    parts = urlsplit(endpoint)
    return parts.hostname or endpoint


def classify_unreachable(endpoint: str, detail: str, timeout: float) -> Finding:
    """One line for a connection that failed before any HTTP answer: DNS, refused, TLS, timeout, route."""
    text = detail.lower()
    host, data = _host(endpoint), {"endpoint": endpoint, "detail": detail}
    egress = ("check the egress (firewall, NetworkPolicy, proxy); modelcache connects directly and does not use "
              "HTTP(S)_PROXY; air-gapped? point HF_ENDPOINT at a mirror (`modelcache serve`) or use --offline")
    if any(k in text for k in _DNS):
        return Finding("endpoint", "fail", f"cannot resolve {host}: DNS lookup failed ({endpoint})",
                       f"{_ENDPOINT_HINT} for a typo, and the pod's DNS (`getent hosts {host}`); air-gapped? point "
                       "HF_ENDPOINT at a mirror or use --offline", {**data, "cause": "dns"})
    if any(k in text for k in _REFUSED):
        return Finding("endpoint", "fail", f"{endpoint} refused the connection: nothing listens on that port",
                       f"is the server running, and are the host and port right? {_ENDPOINT_HINT}",
                       {**data, "cause": "refused"})
    if any(k in text for k in _TIMEOUT):
        return Finding("endpoint", "fail", f"no answer from {endpoint} within {timeout:g}s", egress,
                       {**data, "cause": "timeout"})
    if any(k in text for k in _ROUTE):
        return Finding("endpoint", "fail", f"no route to {host}: the network is unreachable from here", egress,
                       {**data, "cause": "route"})
    if any(k in text for k in _TLS):
        return Finding("endpoint", "fail", f"TLS with {host} failed: {detail[:160]}",
                       "the certificate is not trusted here (a private CA or a TLS-intercepting proxy?): use the "
                       "endpoint's real https URL, or add its CA to the system trust store",
                       {**data, "cause": "tls"})
    if any(k in text for k in _RESET):
        return Finding("endpoint", "fail", f"{endpoint} closed the connection without an answer ({detail[:120]})",
                       f"is it an HTTP(S) server? {_ENDPOINT_HINT} (http vs https, port)", {**data, "cause": "reset"})
    return Finding("endpoint", "fail", f"cannot reach {endpoint}: {detail[:160]}", egress, {**data, "cause": "other"})


def _token_where(report: TokenReport, configured: bool) -> str:
    if not configured:
        return "none set"
    if report.present:
        return report.origin + (f" ({report.file})" if report.file else "")
    return "looked at " + report.origin + (f": {report.file}" if report.file else "")


def _note_findings(report: TokenReport) -> list[Finding]:
    out = []
    for note in report.notes:
        if note.startswith("no token file at"):
            continue  # said by the token line itself
        if "readable by every user" in note:
            # a warning, not a failure: a Kubernetes Secret volume is 0644 unless defaultMode says otherwise
            out.append(Finding("token-file", "warn", note, "chmod 600 the file; for a Secret volume set "
                               "defaultMode: 0400 (0440 with fsGroup)"))
        else:
            out.append(Finding("token-file", "ok", note))
    return out


def local_token_findings(report: TokenReport, configured: bool, why_unchecked: str) -> list[Finding]:
    """Token present or not, from local files and variables alone (offline or endpoint down)."""
    where = _token_where(report, configured)
    if report.present:
        first = Finding("token", "ok", f"token found via {where}", data={"present": True, "origin": report.origin})
    elif why_unchecked.startswith("offline"):
        first = Finding("token", "ok", f"no token ({where}): not needed offline",
                        data={"present": False, "origin": report.origin})
    else:
        first = Finding("token", "warn", f"no token ({where}): gated or private repos will fail", TOKEN_FIX,
                        {"present": False, "origin": report.origin})
    return [first, *_note_findings(report),
            Finding("token-valid", "skip", f"token validity not checked: {why_unchecked}")]


def token_findings(checks: Sequence[TokenCheck], report: TokenReport, configured: bool,
                   repo: str | None) -> list[Finding]:
    """``run_checks``' results as findings, with doctor's reading of them.

    - no token: fine when the repo is readable without one; the failure itself when it is not;
      a warning when no repo was named (public repos only);
    - a world-readable token file is a warning (see ``_note_findings``);
    - a repo refused because the token is absent or rejected says to fix the token first.
    """
    by_name: dict[str, list[TokenCheck]] = {}
    for c in checks:
        by_name.setdefault(c.name, []).append(c)
    repo_checks = by_name.get("repo", []) + by_name.get("endpoint", [])
    repo_failed = any(not c.ok for c in repo_checks)
    valid = by_name.get("valid", [])
    token_rejected = any(not c.ok for c in valid)
    where = _token_where(report, configured)
    meta = {"present": report.present, "origin": report.origin}

    out: list[Finding] = []
    if report.present:
        out.append(Finding("token", "ok", f"token found via {where}", data=meta))
    elif repo is None:
        out.append(Finding("token", "warn", f"no token ({where}): public repos only", TOKEN_FIX, meta))
    elif repo_failed:
        out.append(Finding("token", "fail", f"no token ({where}), and {repo} cannot be read without one",
                           TOKEN_FIX, meta))
    else:
        out.append(Finding("token", "ok", f"no token ({where}): not needed, {repo} is readable without one", data=meta))
    out += _note_findings(report)
    for c in by_name.get("transport", []):
        out.append(Finding("transport", "ok" if c.ok else "fail", c.message, c.fix))
    if valid:
        for c in valid:
            out.append(Finding("token-valid", "ok" if c.ok else "fail", c.message, c.fix))
    else:
        out.append(Finding("token-valid", "skip", "no token to validate"))
    if repo is None:
        return out
    for c in repo_checks:
        fix = c.fix
        if not c.ok and not report.present:
            fix = f"set a token that may read {repo}: {TOKEN_FIX}"
        elif not c.ok and token_rejected:
            fix = "fix the token first (token-valid above); then check access again"
        out.append(Finding("repo-access", "ok" if c.ok else "fail", c.message, fix))
    if not repo_checks:
        out.append(Finding("repo-access", "skip", f"access to {repo} not checked"))
    return out
