"""Human-readable sizes and times, shared by the CLI and progress output."""

from __future__ import annotations

import time

__all__ = ["human_size", "human_time"]


def human_size(n: int | float | None) -> str:
    """``n`` bytes as text in binary units (``512 B``, ``1.5 GiB``, at most TiB); ``-`` for None."""
    if n is None:
        return "-"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"


def human_time(ts: float | None, now: float | None = None) -> str:
    """How long ago epoch time ``ts`` was, in its largest whole unit (``3d ago``, ``5m ago``); ``never`` for None."""
    if ts is None:
        return "never"
    delta = max(0.0, (now or time.time()) - ts)
    for unit, secs in (("d", 86400), ("h", 3600), ("m", 60)):
        if delta >= secs:
            return f"{int(delta // secs)}{unit} ago"
    return f"{int(delta)}s ago"
