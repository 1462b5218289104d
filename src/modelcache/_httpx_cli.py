"""Keep httpx's command-line tool out of modelcache's start-up.

``import httpx`` also imports ``httpx._main`` — the ``httpx`` CLI — which imports rich,
pygments and click at once: ~50 ms of the ~110 ms httpx costs to import, paid by every
``modelcache`` command that touches the network (measured with ``farm-bench -- python -c
'import httpx'``: 0.113 s; with this stub 0.06 s). modelcache never runs that CLI, so before
httpx is first imported a stand-in module takes its place; its ``main`` says what happened.
Nothing changes when httpx was imported before modelcache (its real CLI is kept).
"""

from __future__ import annotations

import importlib.machinery
import sys
import types

__all__ = ["install"]


def _main(*_args: object, **_kw: object) -> None:
    raise RuntimeError("httpx's command-line tool is not loaded inside modelcache; run `httpx` on its own")


def install() -> None:
    """Register the stand-in for ``httpx._main`` unless httpx (or its CLI) is already imported."""
    if "httpx" in sys.modules or "httpx._main" in sys.modules:
        return
    stub = types.ModuleType("httpx._main", "stand-in for httpx's CLI (see modelcache._httpx_cli)")
    stub.main = _main  # type: ignore[attr-defined]
    # a spec, as every imported module has: importlib.util.find_spec("httpx._main") (coverage,
    # pkgutil, doc tools) would otherwise raise ValueError for a module without one
    stub.__spec__ = importlib.machinery.ModuleSpec("httpx._main", None)
    stub.__package__ = "httpx"
    sys.modules["httpx._main"] = stub
