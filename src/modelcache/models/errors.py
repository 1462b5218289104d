"""The model manager's own errors: both are ``ModelCacheError`` subclasses, so the CLI maps them.

- ``ModelConflict`` (exit 1): a registration that would change what a served name means, or a
  removal while replicas still serve it. The hint names the way out.
- ``UnknownModel`` (exit 1): no served name of that name in that namespace.
- ``CardMismatch`` (exit 6, an ``IntegrityError``): the files an engine would load do not have
  the card checksum the name is registered with (drift on disk, or another commit).
"""

from __future__ import annotations

from ..errors import IntegrityError, ModelCacheError

__all__ = ["CardMismatch", "ModelConflict", "UnknownModel"]


class ModelConflict(ModelCacheError):
    """A registration that would change what a served name means, or a removal while replicas serve it."""

    code = "model-conflict"
    exit_code = 1


class CardMismatch(IntegrityError):
    """The card files on disk do not give the card checksum they should (the registered or recorded one)."""

    code = "card-mismatch"


class UnknownModel(ModelCacheError):
    """No served model of that name in that namespace."""

    code = "unknown-model"
    exit_code = 1
