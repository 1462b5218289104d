"""modelcache: keep Hugging Face model caches complete, verified and tidy.

>>> from modelcache import ModelCache
>>> mc = ModelCache(cache_dir="/models/hub", endpoint="https://huggingface.co")  # doctest: +SKIP
>>> mc.download("Qwen/Qwen3-0.6B", profile="tokenizer").snapshot                  # doctest: +SKIP
"""

from .cache.readiness import CheckResult
from .errors import ModelCacheError
from .models import ModelManager
from .service.model_cache import DownloadResult, ModelCache
from .settings import Settings
from .tokens import TokenSource

__all__ = ["CheckResult", "DownloadResult", "ModelCache", "ModelCacheError", "ModelManager", "Settings", "TokenSource"]
__version__ = "0.1.0"
