"""The Hub side: the protocol client (``client``, ``rawhttp``) and the download engine (``download/``)."""

from .client import HubClient, RevisionInfo

__all__ = ["HubClient", "RevisionInfo"]
