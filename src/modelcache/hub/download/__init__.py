"""The download engine: byte-range planning, parallel ranged transfers, verified assembly."""

from .engine import Backoff, EngineStats, FileJob, TransferEngine
from .plan import FilePlan, LocalState, TransferPlan, plan_transfer

__all__ = [
    "Backoff",
    "EngineStats",
    "FileJob",
    "FilePlan",
    "LocalState",
    "TransferEngine",
    "TransferPlan",
    "plan_transfer",
]
