"""A token file planted on a shared volume (``$HF_HOME/token`` when HF_HOME is the PVC) that is a
FIFO, binary junk or huge never hangs or crashes a download: it reads as "no token"."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from modelcache.tokens import TokenSource


@pytest.mark.parametrize("kind", ["fifo", "binary", "huge", "folder-with-fifo"])
def test_a_hostile_token_file_reads_as_no_token(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "token"
    fifo = path if kind == "fifo" else path / "token" if kind == "folder-with-fifo" else None
    if kind == "folder-with-fifo":
        path.mkdir()
    if fifo is not None:
        os.mkfifo(fifo)
    elif kind == "binary":
        path.write_bytes(b"\xff\xfe\x00hf_")
    else:
        path.write_bytes(b"hf_" + b"a" * (8 << 20))
    source = TokenSource(path=path, origin="HF_HOME/token")
    out: dict[str, object] = {}
    th = threading.Thread(target=lambda: out.setdefault("token", source.get()), daemon=True)
    th.start()
    th.join(10)
    if th.is_alive() and fifo is not None:  # unblock the reader before failing
        fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        os.close(fd)
    assert not th.is_alive(), "reading the token blocked on a FIFO"
    assert "token" in out and out["token"] is None
    assert source.inspect() is not None  # and `token check` answers too
