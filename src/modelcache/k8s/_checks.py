"""Checks for the scheduling and environment flags of ``k8s render``: cron schedules,
tolerations, node selectors, extra environment variables. Pure, no I/O."""

from __future__ import annotations

import re

from ..errors import InvalidInput

__all__ = ["CRON_MACROS", "check_cron", "parse_env", "parse_node_selector", "parse_toleration"]

CRON_MACROS = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")
"""The descriptors a CronJob's schedule accepts (robfig/cron, as the Kubernetes controller parses it)."""
_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_DAYS = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")
_FIELDS = (("minute", 0, 59, ()), ("hour", 0, 23, ()), ("day of month", 1, 31, ()),
           ("month", 1, 12, _MONTHS), ("day of week", 0, 6, _DAYS))
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*\Z")
_QUALIFIED = re.compile(r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
                        r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?\Z")
_LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?\Z")
_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")
_RESERVED_ENV = {"HF_HOME", "HF_HUB_CACHE", "HF_HUB_OFFLINE", "HF_TOKEN", "HF_TOKEN_PATH", "HF_ENDPOINT"}


def _value(text: str, lo: int, hi: int, names: tuple[str, ...]) -> int:
    if text.upper() in names:
        return names.index(text.upper()) + (1 if names is _MONTHS else 0)
    if not text.isdigit():
        raise ValueError(text)
    value = int(text)
    if not lo <= value <= hi:
        raise ValueError(text)
    return value


def _check_field(text: str, lo: int, hi: int, names: tuple[str, ...], question: bool) -> None:
    for part in text.split(","):
        rng, _, step = part.partition("/")
        if step and (not step.isdigit() or int(step) < 1 or int(step) > hi):
            raise ValueError(part)
        if rng == "*" or (rng == "?" and question):
            continue
        first, dash, last = rng.partition("-")
        a = _value(first, lo, hi, names)
        if dash and _value(last, lo, hi, names) < a:
            raise ValueError(part)


def check_cron(schedule: str, flag: str = "--gc-schedule") -> str:
    """A CronJob schedule: five fields in range (names for months and days allowed) or a macro."""
    hint = "give five cron fields (minute 0-59, hour 0-23, day 1-31, month 1-12, weekday 0-6), e.g. '30 3 * * *', or @daily"
    if schedule in CRON_MACROS:
        return schedule
    fields = schedule.split(" ")
    if len(fields) != 5:
        raise InvalidInput(f"invalid {flag} {schedule!r}: not five fields separated by single spaces", hint)
    for text, (what, lo, hi, names) in zip(fields, _FIELDS):
        try:
            _check_field(text, lo, hi, names, question=what.startswith("day"))
        except ValueError:
            raise InvalidInput(f"invalid {flag} {schedule!r}: bad {what} field {text!r}", hint) from None
    return schedule


def parse_env(text: str) -> tuple[str, str]:
    """``NAME=VALUE`` → (name, value); the variables render sets itself are refused."""
    name, eq, value = text.partition("=")
    if not eq or not _ENV_NAME.match(name) or any(ord(c) < 32 for c in value) or len(value) > 4096:
        raise InvalidInput(f"invalid --env {text!r}", "give NAME=VALUE (a letter or '_' first, no control characters)")
    if name in _RESERVED_ENV or name.endswith("_PROXY") or name in ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE"):
        raise InvalidInput(f"--env {name} is set by render itself", "use the dedicated flag (--proxy, --ca-bundle, ...)")
    return name, value


def parse_node_selector(text: str) -> tuple[str, str]:
    """``KEY=VALUE`` (a label) → (key, value)."""
    key, eq, value = text.partition("=")
    if not eq or not _QUALIFIED.match(key) or not _LABEL_VALUE.match(value) or len(key) > 316:
        raise InvalidInput(f"invalid --node-selector {text!r}", "give a node label as KEY=VALUE, e.g. nvidia.com/gpu.present=true")
    return key, value


def parse_toleration(text: str) -> dict[str, str]:
    """``KEY[=VALUE][:EFFECT]`` → a toleration (``Equal`` with a value, else ``Exists``)."""
    hint = f"give KEY[=VALUE][:EFFECT] with EFFECT one of {', '.join(_EFFECTS)}, e.g. nvidia.com/gpu:NoSchedule"
    body, colon, effect = text.rpartition(":") if ":" in text else (text, "", "")
    key, eq, value = body.partition("=")
    if (not _QUALIFIED.match(key) or (eq and not _LABEL_VALUE.match(value))
            or (colon and effect not in _EFFECTS)):
        raise InvalidInput(f"invalid --toleration {text!r}", hint)
    out = {"key": key, "operator": "Equal" if eq else "Exists"}
    if eq:
        out["value"] = value
    if effect:
        out["effect"] = effect
    return out
