"""The model manager: served model names → cached revisions with one card checksum, and replicas.

- ``registry`` (pure) / ``store`` (file I/O): ``<cache>/.locks/modelcache/models.json``.
- ``checksum`` (pure) / ``card`` (I/O): the card checksum from the record and from the disk.
- ``replicas``: replica leases (``replica:<ns>:<name>:<id>:<card>``) and where to find them.
- ``status``: ``models_status(cache_dir)``, JSON-able, for ``models ls/verify`` and a server.
- ``manager``: ``ModelManager``, the API; ``runner``: ``modelcache run``'s child process.
"""

from .card import Card, DiskCard, disk_card, recorded_card
from .checksum import card_checksum, is_card_file
from .errors import CardMismatch, ModelConflict, UnknownModel
from .manager import ModelManager, Ready, Target
from .registry import AddOutcome, ModelRecord, Registration
from .replicas import Replica, live_replicas
from .status import models_status

__all__ = [
    "AddOutcome",
    "Card",
    "CardMismatch",
    "DiskCard",
    "ModelConflict",
    "ModelManager",
    "ModelRecord",
    "Ready",
    "Registration",
    "Replica",
    "Target",
    "UnknownModel",
    "card_checksum",
    "disk_card",
    "is_card_file",
    "live_replicas",
    "models_status",
    "recorded_card",
]
