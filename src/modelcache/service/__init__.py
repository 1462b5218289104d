"""The service layer: ``ModelCache`` composes ``hub`` (network) and ``cache`` (disk).

- ``model_cache``: the public API (download, check, use, ls, rm, lifecycle).
- ``ensure``: the one path by which bytes of a commit come into the cache (CLI downloads,
  repairs and the mirror all go through it).
- ``lifecycle``: leases, pins, GC, verify, quotas, bundles.
"""

from .model_cache import DownloadResult, ModelCache

__all__ = ["DownloadResult", "ModelCache"]
