"""What ``doctor`` reports: one ``Finding`` per check, and the ``Report`` that holds them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

__all__ = ["EXIT_FAILED", "EXIT_OK", "STATUSES", "Finding", "Report", "Status"]

Status = Literal["ok", "warn", "fail", "skip"]
STATUSES: tuple[str, ...] = ("ok", "warn", "fail", "skip")

EXIT_OK = 0
"""No check failed (warnings allowed)."""
EXIT_FAILED = 1
"""At least one check failed."""

_LABEL = {"ok": "ok", "warn": "warn", "fail": "FAIL", "skip": "skip"}


@dataclass(frozen=True)
class Finding:
    """One check's outcome: a one-line ``message`` (what, why) and a one-line ``fix``."""

    name: str
    status: Status
    message: str
    fix: str = ""
    data: Mapping[str, object] = field(default_factory=dict)
    """Machine-readable details for ``--json`` (sizes, commits, uid/gid, filesystem type)."""

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"invalid status {self.status!r}")

    @property
    def label(self) -> str:
        """The status as printed: ``ok``, ``warn``, ``FAIL`` or ``skip``."""
        return _LABEL[self.status]

    def lines(self) -> list[str]:
        """``ok    message`` and, for failures and warnings with a fix, ``      fix: …``."""
        out = [f"{self.label:<5} {self.message}"]
        if self.fix and self.status in ("fail", "warn"):
            out.append(f"      fix: {self.fix}")
        return out

    def to_dict(self) -> dict[str, object]:
        """``{"name", "status", "message", "fix", "data"}``."""
        return {"name": self.name, "status": self.status, "message": self.message, "fix": self.fix,
                "data": dict(self.data)}


@dataclass(frozen=True)
class Report:
    """Every finding of one ``doctor`` run, with what was examined."""

    findings: Sequence[Finding]
    context: Mapping[str, object] = field(default_factory=dict)
    """What was examined: cache dir, endpoint, repo, revision, profile, read-only, offline."""

    @property
    def failures(self) -> list[Finding]:
        """The findings with status ``fail``."""
        return [f for f in self.findings if f.status == "fail"]

    @property
    def warnings(self) -> list[Finding]:
        """The findings with status ``warn``."""
        return [f for f in self.findings if f.status == "warn"]

    @property
    def ok(self) -> bool:
        """True when no check failed (warnings allowed)."""
        return not self.failures

    @property
    def exit_code(self) -> int:
        """``EXIT_OK`` when ``ok``, else ``EXIT_FAILED``."""
        return EXIT_OK if self.ok else EXIT_FAILED

    def get(self, name: str) -> Finding | None:
        """The finding named ``name``, or None."""
        return next((f for f in self.findings if f.name == name), None)

    def summary(self) -> str:
        """``all checks passed``, or the counts: ``2 failures, 1 warning``."""
        nf, nw = len(self.failures), len(self.warnings)
        if not nf and not nw:
            return "all checks passed"
        parts = [f"{nf} failure{'s' if nf != 1 else ''}"] if nf else []
        parts += [f"{nw} warning{'s' if nw != 1 else ''}"] if nw else []
        return ", ".join(parts)

    def to_dict(self) -> dict[str, object]:
        """``{"ok", "exit_code", <context…>, "findings": [...]}``."""
        return {"ok": self.ok, "exit_code": self.exit_code, **dict(self.context),
                "findings": [f.to_dict() for f in self.findings]}
