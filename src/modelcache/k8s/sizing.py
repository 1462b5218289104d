"""Volume sizes: the headroom rule for ``--size auto`` and Kubernetes quantities.

The rule (documented in the README, tested): a cache volume for a model of ``N`` bytes asks
for ``N + max(20% of N, 10 GiB)``, rounded up to a whole GiB. The headroom covers our own
state, the ``trees/`` records, a partly fetched file while a newer revision lands, and the
filesystem's own overhead; it does not cover a second full revision (that is what GC is for).
"""

from __future__ import annotations

import math
import re

from ..errors import InvalidInput
from ..settings import parse_size

__all__ = ["GIB", "HEADROOM_FRACTION", "HEADROOM_MIN", "gib_quantity", "parse_quantity", "volume_size_for"]

GIB = 1024**3
HEADROOM_FRACTION = 0.20
"""Extra space as a fraction of the model's size."""
HEADROOM_MIN = 10 * GIB
"""Extra space at least this many bytes."""

_QUANTITY = re.compile(r"^([0-9]+(?:\.[0-9]+)?)\s*(Ki|Mi|Gi|Ti|Pi|k|K|M|G|T|P|KiB|MiB|GiB|TiB|KB|MB|GB|TB|B)?\Z")
_K8S_UNITS = {"Ki": "KiB", "Mi": "MiB", "Gi": "GiB", "Ti": "TiB", "k": "KB", "K": "KB", "M": "MB", "G": "GB", "T": "TB"}


def volume_size_for(model_bytes: int) -> int:
    """Bytes to request for a volume that holds ``model_bytes`` of files (whole GiB)."""
    if model_bytes < 0:
        raise InvalidInput(f"invalid model size {model_bytes}", "a size is never negative")
    headroom = max(math.ceil(model_bytes * HEADROOM_FRACTION), HEADROOM_MIN)
    return math.ceil((model_bytes + headroom) / GIB) * GIB


def gib_quantity(nbytes: int) -> str:
    """A Kubernetes quantity in whole ``Gi``, rounded up: ``107374182400`` → ``100Gi``."""
    return f"{max(1, math.ceil(nbytes / GIB))}Gi"


def parse_quantity(text: str, what: str = "--size") -> int:
    """``100Gi`` (Kubernetes), ``100GiB``, ``1.5TB`` or bytes → bytes; at least 1 GiB."""
    raw = text.strip()
    match = _QUANTITY.match(raw)
    hint = "give a size such as 100Gi, 1.5Ti or 200GB"
    if not match:
        raise InvalidInput(f"invalid {what} {text!r}", hint)
    number, unit = match.group(1), match.group(2) or ""
    if unit == "Pi":
        value = int(float(number) * 1024**5)
    elif unit == "P":
        value = int(float(number) * 1000**5)
    else:
        value = parse_size(number + _K8S_UNITS.get(unit, unit), what)
    if value < GIB:
        raise InvalidInput(f"invalid {what} {text!r}: smaller than 1Gi", hint)
    if value > 1024**5:
        raise InvalidInput(f"invalid {what} {text!r}: larger than 1Pi", hint)
    return value
