"""Kubernetes names and label values: validation and derivation. Pure, no I/O."""

from __future__ import annotations

import hashlib
import re

from ..errors import InvalidInput

__all__ = ["check_label", "check_name", "check_subdomain", "label_value", "slug"]

_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?\Z")
_DNS1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?\Z")
_DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\Z")
_LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?\Z")


def _short_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def check_label(value: str, what: str, flag: str, max_len: int = 63, dns1035: bool = False) -> str:
    """``value`` if it is a DNS-1123 label (DNS-1035 when ``dns1035``: starts with a letter)."""
    rule = "lowercase letters, digits and '-', starting with a letter" if dns1035 else \
        "lowercase letters, digits and '-', starting and ending with a letter or digit"
    pattern = _DNS1035_LABEL if dns1035 else _DNS1123_LABEL
    if not isinstance(value, str) or not value or not pattern.match(value):
        raise InvalidInput(f"invalid {what} {value!r}: not a DNS label", f"{flag}: use {rule}")
    if len(value) > max_len:
        raise InvalidInput(f"invalid {what} {value!r}: longer than {max_len} characters",
                           f"{flag}: give a shorter name")
    return value


def check_subdomain(value: str, what: str, flag: str, max_len: int = 253) -> str:
    """``value`` if it is a DNS-1123 subdomain (dots allowed: Secret, ConfigMap, StorageClass names)."""
    if not isinstance(value, str) or not value or len(value) > max_len or not _DNS1123_SUBDOMAIN.match(value):
        raise InvalidInput(f"invalid {what} {value!r}: not a DNS subdomain",
                           f"{flag}: use at most {max_len} lowercase letters, digits, '-' and '.', "
                           "starting and ending with a letter or digit")
    return value


def check_name(name: str, kind: str, flags: str, max_len: int = 63) -> str:
    """A derived object name (``{base}-download``): say which flags make it too long or bad."""
    if len(name) > max_len or not _DNS1035_LABEL.match(name):
        raise InvalidInput(
            f"the {kind} name {name!r} would not be a valid Kubernetes name (DNS label, at most {max_len} characters)",
            f"shorten {flags}",
        )
    return name


def slug(repo_id: str, max_len: int = 40) -> str:
    """A DNS-1035 label from a repo id's name: ``Qwen/Qwen3-32B`` → ``qwen3-32b``."""
    name = repo_id.rsplit("/", 1)[-1].lower()
    text = re.sub(r"-+", "-", re.sub(r"[^a-z0-9-]", "-", name)).strip("-")
    if not text or not text[0].isalpha():
        text = ("m-" + text).strip("-")
    if len(text) > max_len:
        text = text[: max_len - 9].rstrip("-") + "-" + _short_hash(repo_id)
    return text


def label_value(repo_id: str) -> str:
    """A label value naming a repo: ``Qwen/Qwen3-32B`` → ``Qwen--Qwen3-32B`` (at most 63 chars).

    Ids that do not fit (too long, or starting/ending with ``_``) get a hash suffix, so two
    repos never share a value.
    """
    text = repo_id.replace("/", "--")
    if len(text) <= 63 and _LABEL_VALUE.match(text):
        return text
    core = re.sub(r"^[^A-Za-z0-9]+|[^A-Za-z0-9]+$", "", text)[:54]
    core = re.sub(r"[^A-Za-z0-9]+$", "", core)
    return f"{core}-{_short_hash(repo_id)}" if core else _short_hash(repo_id)
