"""Run an engine command as a child: environment, signal forwarding, exit code.

``run_child(argv, env)`` starts the command, forwards SIGTERM, SIGHUP, SIGQUIT, SIGUSR1/2 and
SIGINT to it, waits, and returns what a shell would: the child's exit code, or ``128 + N``
when a signal N killed it (127: command not found, 126: not executable). SIGINT is not
forwarded when we are the foreground process group of a terminal: the terminal has already
sent Ctrl-C to the child, and a second one would cut its graceful shutdown short.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence

__all__ = ["FORWARDED", "child_env", "exit_status", "run_child", "substitute"]

FORWARDED = (signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2, signal.SIGINT)
PLACEHOLDER = "{snapshot}"


def child_env(base: Mapping[str, str], extra: Mapping[str, str]) -> dict[str, str]:
    """``base`` with ``extra`` on top; the legacy cache variables follow ``HF_HUB_CACHE`` if set."""
    env = {**base, **extra}
    for legacy in ("HUGGINGFACE_HUB_CACHE", "TRANSFORMERS_CACHE"):
        if legacy in env and "HF_HUB_CACHE" in extra:
            env[legacy] = extra["HF_HUB_CACHE"]
    return env


def substitute(argv: Sequence[str], snapshot: str) -> list[str]:
    """Each argument that is exactly ``{snapshot}`` becomes the snapshot path."""
    return [snapshot if a == PLACEHOLDER else a for a in argv]


def exit_status(returncode: int) -> int:
    """A ``Popen`` return code as a shell reports it: killed by signal N (code ``-N``) becomes ``128 + N``."""
    return 128 - returncode if returncode < 0 else returncode


def _terminal_foreground() -> bool:
    try:
        return os.tcgetpgrp(sys.stdin.fileno()) == os.getpgrp()
    except (OSError, ValueError, AttributeError):
        return False


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Linux: the child gets SIGTERM if ``modelcache run`` dies (even by SIGKILL), so an engine
    never outlives the lease that protects its files."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGTERM), 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def run_child(argv: Sequence[str], env: Mapping[str, str]) -> int:
    """Run ``argv`` to completion with ``env``, forwarding signals; return a shell-style exit status."""
    try:
        proc = subprocess.Popen(list(argv), env=dict(env),
                                preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None)
    except FileNotFoundError:
        print(f"error: command not found: {argv[0]}", file=sys.stderr)
        return 127
    except OSError as exc:
        print(f"error: cannot run {argv[0]}: {exc.strerror or exc}", file=sys.stderr)
        return 126
    skip_int = _terminal_foreground()

    def forward(signum: int, _frame: object) -> None:
        if signum == signal.SIGINT and skip_int:
            return
        try:
            proc.send_signal(signum)
        except (ProcessLookupError, OSError):
            pass

    previous = {}
    for sig in FORWARDED:
        try:
            previous[sig] = signal.signal(sig, forward)
        except (ValueError, OSError):  # not the main thread, or not settable here
            pass
    try:
        while True:
            try:
                return exit_status(proc.wait())
            except KeyboardInterrupt:  # pragma: no cover - only if a handler could not be installed
                continue
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
