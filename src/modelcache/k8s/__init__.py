"""Kubernetes manifests for a model cache: plain dicts from a typed options dataclass.

``RenderOptions`` (validated on construction) → ``render()`` → ``Manifest`` files. Pure: no
network, no cluster. ``resolve()`` is the one network step (pin a revision, size the
volume); ``validate`` checks manifests against bundled schemas (``SUPPORTED``: Kubernetes
1.29-1.37); ``cluster`` applies them with the official client (the ``k8s`` extra);
``diagnose`` and ``pending`` say why a download pod failed or does not start.
"""

from .options import RenderOptions, Target
from .render import Manifest, render, render_warnings, to_text, write
from .resolve import Resolved, resolve
from .sizing import HEADROOM_FRACTION, HEADROOM_MIN, parse_quantity, volume_size_for
from .validate import OLDEST_SUPPORTED, SUPPORTED

__all__ = [
    "HEADROOM_FRACTION",
    "HEADROOM_MIN",
    "Manifest",
    "OLDEST_SUPPORTED",
    "RenderOptions",
    "Resolved",
    "SUPPORTED",
    "Target",
    "parse_quantity",
    "render",
    "render_warnings",
    "resolve",
    "to_text",
    "volume_size_for",
    "write",
]
