"""The cache on disk: layout, completeness records, readiness, inventory, publishing, GC.

The names below are imported on first use (PEP 562): ``modelcache check`` loads the
readiness code without the importer's hashing and publishing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_exports

if TYPE_CHECKING:
    from ..protocol import FileEntry
    from .importer import import_folder
    from .layout import RepoLayout, folder_name, parse_folder_name
    from .readiness import CheckResult, check_revision, resolve_commit
    from .records import TreeRecord, read_record, write_record

__all__ = [
    "CheckResult",
    "FileEntry",
    "RepoLayout",
    "TreeRecord",
    "check_revision",
    "folder_name",
    "import_folder",
    "parse_folder_name",
    "read_record",
    "resolve_commit",
    "write_record",
]

_WHERE = {"CheckResult": ".readiness", "check_revision": ".readiness", "resolve_commit": ".readiness",
          "import_folder": ".importer", "RepoLayout": ".layout", "folder_name": ".layout",
          "parse_folder_name": ".layout", "FileEntry": "..protocol", "TreeRecord": ".records",
          "read_record": ".records", "write_record": ".records"}


__getattr__, __dir__ = lazy_exports(__name__, _WHERE, __all__)
