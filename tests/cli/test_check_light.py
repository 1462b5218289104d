"""``modelcache check`` runs in init containers: it imports nothing heavy (issue #12, speed)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

HEAVY = ("httpx", "rich", "kubernetes", "starlette", "uvicorn", "prometheus_client", "modelcache.server",
         "modelcache.hub", "modelcache.service", "modelcache.k8s", "modelcache.models", "modelcache.doctor")

PROBE = """
import json, sys
sys.argv = ["modelcache", "--cache-dir", sys.argv[1], *sys.argv[2:]]
from modelcache.cli.main import main
try:
    main()
except SystemExit as exc:
    code = exc.code
print(json.dumps({"code": code, "heavy": [m for m in %r if m in sys.modules]}))
""" % (HEAVY,)


def probe(cache: Path, *args: str) -> dict:
    out = subprocess.run([sys.executable, "-c", PROBE, str(cache), *args], capture_output=True, text=True,
                         timeout=60)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_check_imports_nothing_heavy(tmp_path: Path, demo_model: Path) -> None:
    from modelcache import ModelCache, Settings

    ModelCache(Settings(cache_dir=tmp_path / "c")).import_folder(demo_model, "org/demo")
    ready = probe(tmp_path / "c", "check", "org/demo", "--json")
    assert ready == {"code": 0, "heavy": []}
    missing = probe(tmp_path / "c", "check", "org/none")
    assert missing == {"code": 1, "heavy": []}


def test_package_import_is_lazy() -> None:
    code = "import sys, modelcache; print(json.dumps([m for m in %r if m in sys.modules]))" % (HEAVY,)
    out = subprocess.run([sys.executable, "-c", "import json; " + code], capture_output=True, text=True, timeout=60)
    assert json.loads(out.stdout) == []
    from modelcache import ModelCache, Settings  # still importable by name

    assert ModelCache and Settings
