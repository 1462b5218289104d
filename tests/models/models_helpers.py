"""Helpers for the model manager tests. The ``cached`` fixture holds the bundled tiny model twice:
``org/tiny@main`` and ``org/tiny@v2`` (another chat template, so another commit and another card)."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

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
