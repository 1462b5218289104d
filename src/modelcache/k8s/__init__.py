"""Kubernetes manifests for a model cache: plain dicts from a typed options dataclass.

``RenderOptions`` (validated on construction) → ``render()`` → ``Manifest`` files. Pure: no
network, no cluster. ``resolve()`` is the one network step (pin a revision, size the
volume); ``validate`` checks manifests against bundled schemas; ``cluster`` applies them
with the official client (the ``k8s`` extra).
"""

from .options import RenderOptions, Target
from .render import Manifest, render, to_text, write
from .resolve import Resolved, resolve
from .sizing import HEADROOM_FRACTION, HEADROOM_MIN, parse_quantity, volume_size_for

__all__ = [
    "HEADROOM_FRACTION",
    "HEADROOM_MIN",
    "Manifest",
    "RenderOptions",
    "Resolved",
    "Target",
    "parse_quantity",
    "render",
    "resolve",
    "to_text",
    "volume_size_for",
    "write",
]
