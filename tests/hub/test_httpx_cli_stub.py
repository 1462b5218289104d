"""httpx's CLI (rich, pygments, click: ~50 ms) is not imported with modelcache; httpx itself works."""

from __future__ import annotations

import subprocess
import sys


def _run(code: str) -> str:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_httpx_without_its_cli_after_modelcache() -> None:
    code = ("import sys, modelcache, httpx\n"
            "assert 'pygments' not in sys.modules and 'rich' not in sys.modules\n"
            "with httpx.Client() as c: pass\n"
            "try:\n    httpx.main()\nexcept RuntimeError as e:\n    print('stub:', e)\n")
    assert _run(code).startswith("stub: httpx's command-line tool is not loaded")


def test_httpx_imported_first_keeps_its_cli() -> None:
    code = "import httpx, modelcache, httpx._main as m\nprint(m.__file__ is not None)"
    assert _run(code) == "True"


def test_the_stand_in_is_a_well_formed_module() -> None:
    """Tools that look modules up (coverage, pkgutil, doc generators) call find_spec on them."""
    code = ("import importlib.util, modelcache, httpx\n"
            "spec = importlib.util.find_spec('httpx._main')\n"
            "print(spec.name, importlib.import_module('httpx._main').__package__)")
    assert _run(code) == "httpx._main httpx"
