"""Running the app under uvicorn: one process or ``workers`` processes, bounded, quiet on aborts."""

from __future__ import annotations

import logging

from starlette.applications import Starlette

__all__ = ["serve"]

log = logging.getLogger("modelcache.server")

# Bounds against slow or piling-up clients: a connection that sends no complete request within
# the keep-alive window is closed; past ``limit_concurrency`` open requests new ones get 503.
KEEP_ALIVE_SECONDS = 5
LIMIT_CONCURRENCY = 2048
MAX_INCOMPLETE_EVENT = 64 * 1024


class _OneLineAborts(logging.Filter):
    """A mirror fill that fails mid-body aborts the response by raising; uvicorn would log the
    whole traceback for each such request. Say it in one line, with the reason."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if exc is not None and type(exc).__name__ == "FillAborted":
            record.msg, record.args, record.exc_info, record.exc_text = f"aborted a response: {exc}", (), None, None
        return True


def serve(app: Starlette | None, host: str = "127.0.0.1", port: int = 8080, *, workers: int = 1,
          log_json: bool = False) -> None:
    """Serve ``app`` on ``host:port`` until interrupted (blocking).

    ``workers > 1``: ``app`` is None and each worker process builds its app with
    ``server.worker.app_factory`` from the spec the caller put in the environment."""
    import uvicorn

    logging.getLogger("uvicorn.error").addFilter(_OneLineAborts())
    if log_json:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        log.propagate = False
    bounds = dict(timeout_keep_alive=KEEP_ALIVE_SECONDS, limit_concurrency=LIMIT_CONCURRENCY,
                  h11_max_incomplete_event_size=MAX_INCOMPLETE_EVENT, log_level="warning", access_log=False)
    if workers > 1:
        uvicorn.run("modelcache.server.worker:app_factory", factory=True, host=host, port=port, workers=workers,
                    **bounds)  # type: ignore[arg-type]
    else:
        uvicorn.run(app, host=host, port=port, **bounds)  # type: ignore[arg-type]
