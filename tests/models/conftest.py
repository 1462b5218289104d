"""A cache holding the bundled tiny model twice: ``org/tiny@main`` and ``org/tiny@v2`` (another
chat template, so another commit and another card)."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from modelcache import ModelCache, Settings

REPO = "org/tiny"


@dataclass(frozen=True)
class Cached:
    dir: Path
    v1: str
    v2: str

    def snapshot(self, commit: str) -> Path:
        return self.dir / "models--org--tiny" / "snapshots" / commit


def variant(demo_model: Path, dest: Path, template: str) -> Path:
    shutil.copytree(demo_model, dest)
    cfg = json.loads((dest / "tokenizer_config.json").read_text())
    cfg["chat_template"] = template
    (dest / "tokenizer_config.json").write_text(json.dumps(cfg, indent=2))
    return dest


@pytest.fixture
def cached(tmp_path: Path, demo_model: Path) -> Cached:
    cache_dir = tmp_path / "cache"
    mc = ModelCache(Settings(cache_dir=cache_dir, offline=True))
    v1 = mc.import_folder(demo_model, REPO).commit
    v2 = mc.import_folder(variant(demo_model, tmp_path / "v2", "{{ messages[-1]['content'] }}"), REPO, "v2").commit
    assert v1 != v2
    return Cached(cache_dir, v1, v2)
