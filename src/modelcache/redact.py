"""One redaction layer for everything modelcache prints.

Every token modelcache reads is registered here; the CLI wraps ``sys.stdout`` and
``sys.stderr`` in ``RedactingStream`` so no code path — an error message, a progress line, a
traceback, a third-party library's log — can print one. Belt and braces: messages are already
built without tokens.
"""

from __future__ import annotations

import io
import sys
import threading
from typing import IO, Any

__all__ = ["MASK", "RedactingStream", "install", "redact", "register_secret"]

MASK = "hf_***"
_SECRETS: set[str] = set()
_LOCK = threading.Lock()


def register_secret(secret: str | None) -> None:
    """Mask ``secret`` in everything ``redact`` sees from now on, process-wide; thread-safe.

    None and strings shorter than 6 characters are ignored.
    """
    if secret and len(secret) >= 6:
        with _LOCK:
            _SECRETS.add(secret)


def redact(text: str) -> str:
    """``text`` with each registered secret replaced by ``MASK``.

    Longest first, so a secret that contains another is masked whole.
    """
    if not _SECRETS or not text:
        return text
    with _LOCK:
        secrets = sorted(_SECRETS, key=len, reverse=True)
    for s in secrets:
        if s in text:
            text = text.replace(s, MASK)
    return text


class RedactingStream(io.TextIOBase):
    """A text stream that masks registered secrets in whatever is written through it."""

    def __init__(self, inner: IO[str]) -> None:
        self._inner = inner

    def write(self, s: str) -> int:
        """Write ``s`` with secrets masked; returns ``len(s)``, the length given (not the masked one)."""
        self._inner.write(redact(s))
        return len(s)

    def flush(self) -> None:
        """Flush the wrapped stream."""
        self._inner.flush()

    def isatty(self) -> bool:
        """Whether the wrapped stream is a terminal."""
        return self._inner.isatty()

    def fileno(self) -> int:
        """The wrapped stream's file descriptor (what is written to it directly is not masked)."""
        return self._inner.fileno()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        """The wrapped stream's encoding (``utf-8`` if it has none)."""
        return getattr(self._inner, "encoding", "utf-8")

    @property
    def buffer(self) -> Any:  # binary payloads (``export -o -``) pass through untouched
        """The wrapped stream's binary buffer, unmasked."""
        return self._inner.buffer  # type: ignore[attr-defined]

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def install() -> None:
    """Wrap ``sys.stdout`` and ``sys.stderr`` in ``RedactingStream``; a stream already wrapped is left as it is."""
    if not isinstance(sys.stdout, RedactingStream):
        sys.stdout = RedactingStream(sys.stdout)
    if not isinstance(sys.stderr, RedactingStream):
        sys.stderr = RedactingStream(sys.stderr)
