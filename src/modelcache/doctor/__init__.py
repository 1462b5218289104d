"""``modelcache doctor``: the usual reasons a download or an engine pod fails, as checks.

Each check gives one ``Finding`` (ok / warn / fail / skip, a one-line message, a one-line
fix). The checks themselves are pure functions over facts (``checks``, ``netchecks``,
``mounts``); ``system`` reads the facts; ``runner`` orders them and skips what cannot be known.
"""

from .findings import EXIT_FAILED, EXIT_OK, Finding, Report
from .runner import DoctorOptions, run_doctor

__all__ = ["EXIT_FAILED", "EXIT_OK", "DoctorOptions", "Finding", "Report", "run_doctor"]
