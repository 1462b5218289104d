"""Running the app under uvicorn: one process or ``workers`` processes, bounded, quiet on aborts."""

from __future__ import annotations

import logging

__all__ = ["serve"]

log = logging.getLogger("modelcache.server")



class _OneLineAborts(logging.Filter):
    """A mirror fill that fails mid-body aborts the response by raising; uvicorn would log the
    whole traceback for each such request. Say it in one line, with the reason."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if exc is not None and type(exc).__name__ == "FillAborted":
            record.msg, record.args, record.exc_info, record.exc_text = f"aborted a response: {exc}", (), None, None
        return True


def serve(app: object | None, host: str = "127.0.0.1", port: int = 8080, *, workers: int = 1,
          log_json: bool = False, header_timeout: float = 10.0, keep_alive: float = 5.0,
          max_connections: int | None = None) -> None:
    """Serve ``app`` on ``host:port`` until interrupted (blocking).

    ``workers > 1``: ``app`` is None and each worker process builds its app with
    ``server.config.app_factory`` from the spec the caller put in the environment.
    Callers are untrusted (``_limits``): a client must send its request head within
    ``header_timeout`` seconds, an idle keep-alive connection is closed after ``keep_alive``
    seconds, headers are capped at 64 KiB, and above ``max_connections`` (default: well under
    the fd limit) new connections are closed at once."""
    import uvicorn

    from ._limits import HeadGuard, default_max_connections, uvicorn_limits

    logging.getLogger("uvicorn.error").addFilter(_OneLineAborts())
    if log_json:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        log.propagate = False
    HeadGuard.header_timeout = header_timeout
    HeadGuard.max_connections = max_connections or default_max_connections()
    bounds = {**uvicorn_limits(keep_alive=keep_alive), "log_level": "warning", "access_log": False}
    if workers > 1:
        uvicorn.run("modelcache.server.config:app_factory", factory=True, host=host, port=port, workers=workers,
                    **bounds)  # type: ignore[arg-type]
    else:
        uvicorn.run(app, host=host, port=port, **bounds)  # type: ignore[arg-type]
