"""What "nothing outside the cache changed" means in the hostile tests."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

__all__ = ["tree_digest"]


def tree_digest(folder: Path) -> dict[str, str]:
    """Every entry under ``folder`` → links as their target text, files as sha256, anything else
    (folders, FIFOs) as its mode; compare before and after."""
    out = {}
    for root, dirs, files in os.walk(folder, followlinks=False):
        for name in dirs + files:
            p = Path(root) / name
            rel = p.relative_to(folder).as_posix()
            if p.is_symlink():
                out[rel] = "link:" + os.readlink(p)
            elif p.is_file():
                out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
            else:
                out[rel] = oct(p.lstat().st_mode)
    return out
