"""modelcache: keep Hugging Face model caches complete, verified and tidy.

>>> from modelcache import ModelCache
>>> mc = ModelCache(cache_dir="/models/hub", endpoint="https://huggingface.co")  # doctest: +SKIP
>>> mc.download("Qwen/Qwen3-0.6B", profile="tokenizer").snapshot                  # doctest: +SKIP

The names below are imported on first use (PEP 562), so ``modelcache check`` in an init
container does not load the HTTP stack.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import _httpx_cli
from ._lazy import lazy_exports

_httpx_cli.install()  # httpx without its CLI: ~50 ms less per start (see _httpx_cli)

if TYPE_CHECKING:
    from .cache.readiness import CheckResult
    from .errors import ModelCacheError
    from .models import ModelManager
    from .service.model_cache import DownloadResult, ModelCache
    from .settings import Settings
    from .tokens import TokenSource

__all__ = ["CheckResult", "DownloadResult", "ModelCache", "ModelCacheError", "ModelManager", "Settings", "TokenSource"]
__version__ = "0.1.0"

_WHERE = {"CheckResult": ".cache.readiness", "DownloadResult": ".service.model_cache",
          "ModelCache": ".service.model_cache", "ModelCacheError": ".errors", "ModelManager": ".models",
          "Settings": ".settings", "TokenSource": ".tokens"}


__getattr__, __dir__ = lazy_exports(__name__, _WHERE, __all__)
