"""Retrying transient failures: backoff with jitter, ``Retry-After``, and an overall deadline.

File bodies (the transfer engine) and API calls (revision info, file lists) use the same
``Backoff``. API calls are also bounded by a ``Deadline``: however often the endpoint answers
429/5xx or drops the connection, one call gives up after ``api_deadline`` seconds, and every
wait is reported (``on_wait``) so the progress output can say the download is waiting and why.
Randomness, sleeping and the clock are injectable: tests pass their own, nothing is patched.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["Backoff", "Deadline", "RetryPolicy", "WaitCallback"]

WaitCallback = Callable[[str, float], None]
"""``on_wait(reason, seconds)``: called before sleeping between attempts."""


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with full jitter; ``Retry-After`` wins when the server sends it."""

    base: float = 0.5
    cap: float = 30.0
    attempts: int = 5
    rand: Callable[[float, float], float] = field(default=random.uniform, compare=False, repr=False)
    """``rand(low, high)``: the jitter source (``random.uniform``; tests inject their own)."""

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait before retry number ``attempt`` (0-based)."""
        if retry_after is not None:
            return retry_after
        return self.rand(0, min(self.cap, self.base * (2**attempt)))


class Deadline:
    """An overall time budget, by an injectable monotonic clock."""

    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.seconds = seconds
        self.end = clock() + seconds

    def remaining(self) -> float:
        """Seconds left, never negative."""
        return max(0.0, self.end - self.clock())

    @property
    def expired(self) -> bool:
        """True once the time budget is used up."""
        return self.clock() >= self.end


@dataclass(frozen=True)
class RetryPolicy:
    """How API calls are retried: ``backoff`` between attempts, all within ``deadline`` seconds."""

    deadline: float = 120.0
    backoff: Backoff = field(default_factory=lambda: Backoff(base=0.5, cap=30.0, attempts=1_000_000))
    sleep: Callable[[float], None] = field(default=time.sleep, compare=False, repr=False)
    clock: Callable[[], float] = field(default=time.monotonic, compare=False, repr=False)
    on_wait: WaitCallback | None = field(default=None, compare=False, repr=False)

    def start(self) -> Deadline:
        """A new ``Deadline`` of ``deadline`` seconds, starting now (one per API call)."""
        return Deadline(self.deadline, self.clock)
