"""A declared set of models, reconciled: ``modelcache sync -f modelcache.yaml``.

``spec`` reads and validates the file (errors name the line; ``schema.json`` is the same
contract for editors), ``plan`` decides (pure), ``run`` observes and carries the plan out.
"""

from .plan import Observed, Step, SyncPlan, SyncState, plan_sync
from .run import SyncResult, sync
from .spec import ModelSpec, Policy, SyncSpec, load_spec, parse_spec

__all__ = ["ModelSpec", "Observed", "Policy", "Step", "SyncPlan", "SyncResult", "SyncSpec", "SyncState", "load_spec",
           "parse_spec", "plan_sync", "sync"]
