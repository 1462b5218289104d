"""The cache on disk: layout, completeness records, readiness, inventory, publishing, GC."""

from .readiness import CheckResult, check_revision, resolve_commit
from .importer import import_folder
from .layout import RepoLayout, folder_name, parse_folder_name
from ..protocol import FileEntry
from .records import TreeRecord, read_record, write_record

__all__ = [
    "CheckResult",
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
