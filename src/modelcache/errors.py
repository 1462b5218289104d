"""Every error modelcache raises, with a hint that says what to do.

The tree::

    ModelCacheError                  one line: what, why (``message``) and what to do (``hint``)
    ├── InvalidInput                 a repo id, revision, path, size or flag that cannot be right
    ├── HubError                     the endpoint answered, and the answer is "no"
    │   ├── RepoNotFound             404 RepoNotFound / 401 on a repo URL
    │   ├── RevisionNotFound         404 RevisionNotFound
    │   ├── EntryNotFound            404 EntryNotFound
    │   ├── GatedRepo                403 GatedRepo
    │   ├── AuthError                401/403 that is not one of the above
    │   └── ProtocolError            an answer that breaks the Hub protocol
    ├── TransientError               worth retrying: connection drop, timeout, 5xx, 429
    │   └── EndpointUnreachable      nothing answers at the endpoint
    ├── IntegrityError               bytes that do not match their declared size or sha256
    │   └── models.CardMismatch      files an engine would load differ from the registered card
    ├── CacheError                   the cache directory cannot be used (permissions, disk full)
    ├── NotCached                    offline, and the cache does not have what was asked
    ├── models.ModelConflict         a registration that would change what a served name means
    └── models.UnknownModel          no served name of that name in that namespace

The CLI maps these to exit codes in exactly one place (``cli.main``); ``exit_code`` is the
documented number. No message ever contains a token: messages are built from repo ids,
revisions, paths and status codes only.
"""

from __future__ import annotations

__all__ = [
    "AuthError",
    "CacheError",
    "EndpointUnreachable",
    "EntryNotFound",
    "GatedRepo",
    "HubError",
    "IntegrityError",
    "InvalidInput",
    "ModelCacheError",
    "NotCached",
    "ProtocolError",
    "RepoNotFound",
    "RevisionNotFound",
    "TransientError",
]


class ModelCacheError(Exception):
    """Base of every modelcache error: a message (what and why) and a hint (what to do)."""

    code = "error"
    exit_code = 1

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} — {self.hint}" if self.hint else self.message

    def to_dict(self) -> dict[str, str]:
        """``{"error": code, "message": …, "hint": …}`` (the JSON error record)."""
        return {"error": self.code, "message": self.message, "hint": self.hint}


class InvalidInput(ModelCacheError, ValueError):
    """Raised for a repo id, revision, path, size or flag that cannot be right (exit code 2)."""

    code = "invalid-input"
    exit_code = 2


class HubError(ModelCacheError):
    """Raised when the endpoint answered and the answer is "no" (exit code 3)."""

    code = "hub-error"
    exit_code = 3


class RepoNotFound(HubError):
    """Raised when the repo does not exist, or is private and the token cannot see it (404, or 401 on a repo URL)."""

    code = "repo-not-found"


class RevisionNotFound(HubError):
    """Raised when the repo has no such branch, tag or commit (404 RevisionNotFound)."""

    code = "revision-not-found"


class EntryNotFound(HubError):
    """Raised when a file is not in the repo at that revision (404 EntryNotFound)."""

    code = "entry-not-found"


class GatedRepo(HubError):
    """Raised when the repo is gated and the token has not been granted access (403, exit code 4)."""

    code = "gated-repo"
    exit_code = 4


class AuthError(HubError):
    """Raised for a 401/403 that is not one of the above: a missing, invalid or insufficient token (exit code 4)."""

    code = "auth"
    exit_code = 4


class ProtocolError(HubError):
    """Raised for an answer that breaks the Hub protocol (missing headers, unparsable JSON…)."""

    code = "protocol"


class TransientError(ModelCacheError):
    """Raised for a failure worth retrying: connection drop, timeout, 5xx, 429 (exit code 5).

    ``retry_after`` is the server's ``Retry-After`` in seconds, when it sent one.
    """

    code = "transient"
    exit_code = 5

    def __init__(self, message: str, hint: str = "", retry_after: float | None = None) -> None:
        super().__init__(message, hint)
        self.retry_after = retry_after


class EndpointUnreachable(TransientError):
    """Raised when nothing answers at the endpoint (DNS, connection refused, TLS failure)."""

    code = "unreachable"


class IntegrityError(ModelCacheError):
    """Raised when bytes do not match their declared size or sha256 (exit code 6)."""

    code = "integrity"
    exit_code = 6


class CacheError(ModelCacheError):
    """Raised when the cache directory cannot be used: permissions, disk full, bad layout (exit code 7)."""

    code = "cache"
    exit_code = 7


class NotCached(ModelCacheError):
    """Raised when offline and the cache does not have what was asked (exit code 1)."""

    code = "not-cached"
    exit_code = 1


# -- exit codes: the one table (the CLI's docstring, the Job's podFailurePolicy and the k8s
# diagnoses are derived from it) -----------------------------------------------------------
EXIT_CODES: dict[int, tuple[str, bool]] = {
    0: ("ok", False),
    1: ("not ready, not cached, or another failure", False),
    2: ("bad input (a flag, repo id or revision that cannot be right)", True),
    3: ("the endpoint said no: repo, revision or file not found", True),
    4: ("token rejected, or a gated repo the token has no access to", True),
    5: ("network: unreachable, timeouts, 5xx/429 after retries", False),
    6: ("integrity: bytes that do not match their size or sha256", False),
    7: ("the cache cannot be used: volume full, or permission denied (the message says which)", True),
}
"""exit code → (meaning, permanent). *Permanent*: running the same command again cannot help, so
a Kubernetes Job fails at once instead of retrying (``podFailurePolicy``)."""

PERMANENT_EXIT_CODES: tuple[int, ...] = tuple(code for code, (_, permanent) in EXIT_CODES.items() if permanent)
"""Exit codes no retry can fix (2, 3, 4, 7)."""

__all__ += ["EXIT_CODES", "PERMANENT_EXIT_CODES"]
