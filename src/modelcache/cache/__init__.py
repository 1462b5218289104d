"""The cache on disk: layout, completeness records, detection, inventory, publishing."""

from .detect import CheckResult, check_revision, resolve_commit
from .importer import import_folder
from .layout import RepoLayout, folder_name, parse_folder_name
from .records import FileEntry, TreeRecord, read_record, write_record

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
