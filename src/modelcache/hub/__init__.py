"""The Hub side: protocol client, transfer planning and the blob fetcher."""

from .client import HubClient, RevisionInfo
from .plan import FilePlan, LocalState, TransferPlan, plan_transfer
from .transfer import Backoff, FetchStats, fetch_blob

__all__ = [
    "Backoff",
    "FetchStats",
    "FilePlan",
    "HubClient",
    "LocalState",
    "RevisionInfo",
    "TransferPlan",
    "fetch_blob",
    "plan_transfer",
]
