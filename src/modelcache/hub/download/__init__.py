"""The download engine: byte-range planning, parallel ranged transfers, verified assembly."""

from .engine import Backoff, EngineStats, FileJob, TransferEngine
from .plan import FilePlan, LocalState, TransferPlan, plan_transfer
from .ranges import DEFAULT_CHUNK

__all__ = [
    "DEFAULT_CHUNK",
    "Backoff",
    "EngineStats",
    "FileJob",
    "FilePlan",
    "LocalState",
    "TransferEngine",
    "TransferPlan",
    "plan_transfer",
]
