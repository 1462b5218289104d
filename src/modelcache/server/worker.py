"""``serve --workers N``: the app factory each uvicorn worker process starts from.

The CLI puts the serve spec in ``MODELCACHE_SERVE_SPEC`` (JSON) before uvicorn forks its
workers; each worker reads it here, at its own entry point, with the process environment for
its ``Settings``, and builds the app exactly as a single process does (``config.build_app``).
"""

from __future__ import annotations

import os

from starlette.applications import Starlette

__all__ = ["ENV", "app_factory"]

ENV = "MODELCACHE_SERVE_SPEC"


def app_factory() -> Starlette:
    """The app of one ``--workers`` process, built from the spec in ``MODELCACHE_SERVE_SPEC``.

    ``Settings`` come from this process's environment. KeyError if the variable is not set.
    """
    from ..settings import Settings
    from .config import ServeSpec, build_app

    spec = ServeSpec.from_json(os.environ[ENV])
    return build_app(spec, Settings.from_process_env(**spec.settings))  # type: ignore[arg-type]
