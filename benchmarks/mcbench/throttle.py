"""Token-bucket rate limiting for the benchmark upstream (per connection and aggregate)."""

from __future__ import annotations

import asyncio
import time

__all__ = ["TokenBucket"]


class TokenBucket:
    """Bytes/s limiter for asyncio (single loop). Debt model: take first, then sleep off the debt."""

    def __init__(self, rate: float, burst_s: float = 0.05, min_burst: int = 256 * 1024) -> None:
        self.rate = float(rate)
        self.capacity = max(float(min_burst), self.rate * burst_s)
        self.tokens = self.capacity
        self.t = time.monotonic()

    async def take(self, n: int) -> None:
        now = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.t) * self.rate)
        self.t = now
        self.tokens -= n
        if self.tokens < 0:
            await asyncio.sleep(-self.tokens / self.rate)
