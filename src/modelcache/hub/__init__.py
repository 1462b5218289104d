"""The Hub side: protocol client, transfer planning and the transfer engine."""

from .chunks import DEFAULT_CHUNK
from .client import HubClient, RevisionInfo
from .engine import Backoff, EngineStats, FileJob, TransferEngine
from .plan import FilePlan, LocalState, TransferPlan, plan_transfer

__all__ = [
    "DEFAULT_CHUNK",
    "Backoff",
    "EngineStats",
    "FileJob",
    "FilePlan",
    "HubClient",
    "LocalState",
    "RevisionInfo",
    "TransferEngine",
    "TransferPlan",
    "plan_transfer",
]
