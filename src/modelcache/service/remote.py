"""Asking the upstream what a revision is, and writing the answer into the cache.

The one place where a revision becomes a commit, its file list becomes the completeness record
and the answer becomes refs and an access record — for ``download`` and for the mirror alike.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from ..cache.access import Access, write_access
from ..cache.layout import RepoLayout
from ..cache.publish import ensure_repo_dirs, publish_record
from ..cache.records import TreeRecord, read_record
from ..hub.client import HubClient, RevisionInfo

__all__ = ["fetch_revision", "record_revision"]


def fetch_revision(client: HubClient, layout: RepoLayout, revision: str,
                   on_wait: Callable[[str, float], None] | None = None) -> tuple[RevisionInfo, TreeRecord]:
    """The commit ``revision`` names upstream now, and that commit's whole file list.

    The file list comes from the local record when there is one (a commit never changes), else
    from the upstream's tree API."""
    info = client.revision_info(layout.repo_type, layout.repo_id, revision, on_wait=on_wait)
    record = read_record(layout.tree_record(info.commit), info.commit)
    if record is None:
        record = TreeRecord.of(info.commit, client.list_files(layout.repo_type, layout.repo_id, info.commit,
                                                              on_wait=on_wait))
    return info, record


def record_revision(layout: RepoLayout, info: RevisionInfo, record: TreeRecord, names: Iterable[str] = ()) -> None:
    """Note the access, write the record (its snapshot folder first), point each of ``names`` at the commit.

    The access record comes first: a kill at any point never leaves a private or gated repo's
    record or refs visible to ``serve`` without it. Refs come after the record:
    huggingface_hub's scanner rejects a ref to a missing snapshot."""
    ensure_repo_dirs(layout)
    write_access(layout, Access(gated=info.gated, private=info.private))
    publish_record(layout, record)
    for name in set(names) - {record.commit}:
        layout.write_ref(name, record.commit)
