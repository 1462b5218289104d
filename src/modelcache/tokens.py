"""Where the access token comes from, read fresh for every download, never shown.

Order (first that is set wins): ``--token-file`` (a file, or a mounted Secret directory),
``HF_TOKEN``, ``HUGGING_FACE_HUB_TOKEN``, ``HF_TOKEN_PATH``, a mounted Secret directory
(``MODELCACHE_TOKEN_DIR``, default ``/var/run/secrets/huggingface`` when it exists),
``$HF_HOME/token``. In a directory, the first of the files ``HF_TOKEN``, ``token``,
``hf_token`` is the token (a Kubernetes Secret mounted as a volume).
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from .redact import register_secret

__all__ = ["SECRET_KEYS", "TokenReport", "TokenSource"]

SECRET_KEYS = ("HF_TOKEN", "token", "hf_token", "HUGGING_FACE_HUB_TOKEN")


@dataclass(frozen=True)
class TokenReport:
    """What ``TokenSource.inspect`` found: whether a token is there, where from, and warnings; never the token."""

    present: bool
    origin: str
    file: Path | None
    notes: tuple[str, ...]

    def to_dict(self) -> dict[str, object]:
        """``{"present", "origin", "file", "notes"}`` (``file`` a string or None)."""
        return {"present": self.present, "origin": self.origin, "file": str(self.file) if self.file else None,
                "notes": list(self.notes)}


@dataclass(frozen=True)
class TokenSource:
    """``get()`` reads the token now (files are re-read every call, so a rotated Secret works).

    The value is never part of ``repr``: a TokenSource can be logged safely.
    """

    value: str | None = field(default=None, repr=False)
    """A token given directly (from ``HF_TOKEN``)."""
    path: Path | None = None
    """A token file or a mounted Secret directory."""
    origin: str = "none"
    """Where it was found, for messages (``--token-file``, ``HF_TOKEN``, ``HF_HOME/token``, …)."""

    def __post_init__(self) -> None:
        register_secret((self.value or "").strip())
        if self.path is not None and not isinstance(self.path, Path):  # a str or any PathLike
            object.__setattr__(self, "path", Path(os.fspath(self.path)))

    def file(self) -> Path | None:
        """The file the token is read from now (for a directory: its first key file)."""
        if self.path is None:
            return None
        if self.path.is_dir():
            for key in SECRET_KEYS:
                if (self.path / key).is_file():
                    return self.path / key
            return None
        return self.path

    def _raw(self) -> str | None:
        if self.value is not None:
            return self.value
        f = self.file()
        if f is None:
            return None
        try:
            return _read_small_regular(f).decode("utf-8")
        except (OSError, UnicodeDecodeError):
            return None

    def get(self) -> str | None:
        """The token, read now (a file is re-read every call) and stripped; None when there is none.

        Registers the value with the redactor so it never appears in a message or log.
        """
        raw = self._raw()
        token = raw.strip() if raw else None
        register_secret(token)
        return token or None

    def inspect(self) -> TokenReport:
        """What a person should know about the token, without showing it."""
        notes: list[str] = []
        raw = self._raw()
        f = self.file()
        if self.path is not None and f is None:
            notes.append(f"no token file at {self.path}" + (f" (looked for {', '.join(SECRET_KEYS)})"
                                                             if self.path.is_dir() else ""))
        if raw is not None and raw != raw.strip():
            notes.append("the token had surrounding whitespace or a trailing newline: stripped "
                         "(a pasted newline is a classic cause of 401)")
        if f is not None:
            try:
                mode = f.stat().st_mode
                if mode & stat.S_IROTH:
                    notes.append(f"{f} is readable by every user: chmod 600 (or 640 with a group) it")
            except OSError:
                pass
        present = bool(raw and raw.strip())
        return TokenReport(present, self.origin, f, tuple(notes))

    @property
    def configured(self) -> bool:
        """True when a value or a path was given (the file may still be missing or empty)."""
        return self.value is not None or self.path is not None


def _read_small_regular(path: Path, max_bytes: int = 64 * 1024) -> bytes:
    """A regular file of at most ``max_bytes`` (a mounted Secret's link is followed): a FIFO,
    device or huge file planted at a token path on a shared volume never hangs, never fills memory."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(f"{path} is not a regular file")
        data = os.read(fd, max_bytes + 1)
    finally:
        os.close(fd)
    if len(data) > max_bytes:
        raise OSError(f"{path} is larger than {max_bytes} bytes")
    return data
