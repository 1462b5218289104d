"""Writers that do not coordinate at all (no lock: e.g. two mirror replicas filling the same
blob) each assemble into their own inode and install only what they verified themselves."""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path

from helpers.fault_server import fault_server
from rel_helpers import model

from modelcache.cache.layout import RepoLayout
from modelcache.cache.publish import ensure_repo_dirs, install_blob_fd
from modelcache.hub.client import HubClient
from modelcache.hub.download.engine import FileJob, TransferEngine
from modelcache.protocol import FileEntry


def test_uncoordinated_writers_never_publish_each_other_s_partial(tmp_path: Path) -> None:
    repo = model("org/racers", 3 * 1024 * 1024)
    layout = RepoLayout(tmp_path / "cache", "model", repo.repo_id)
    ensure_repo_dirs(layout)
    item = next(i for i in repo.tree() if i["path"] == "model.safetensors")
    entry = FileEntry.from_tree_item(item)
    errors: list[BaseException] = []
    with fault_server(repo, chunk=64 * 1024, delay=0.002) as srv:
        client = HubClient(srv.url)
        url = client.file_url("model", repo.repo_id, repo.commit, entry.path)

        def writer(i: int) -> None:
            try:
                job = FileJob(entry, url, layout.partial(entry.etag), lambda e: None,
                              install=lambda e, fd, private: install_blob_fd(layout, e.etag, fd, private))
                TransferEngine(client, connections=2, chunk_size=256 * 1024, checkpoint_bytes=128 * 1024).run([job])
            except BaseException as exc:  # noqa: BLE001
                errors.append(exc)

        threads = [threading.Thread(target=writer, args=(i,)) for i in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    assert not errors, errors
    assert hashlib.sha256(layout.blob(entry.etag).read_bytes()).hexdigest() == entry.etag
    assert not layout.partial(entry.etag).exists()
