"""The Secret for the HF token and the PVCs (model cache, compilation cache). Pure builders."""

from __future__ import annotations

from ._pod import meta
from .options import RenderOptions
from .sizing import gib_quantity

__all__ = ["compile_cache_pvcs", "model_cache_pvcs", "pvc", "secret"]


def secret(o: RenderOptions) -> dict[str, object]:
    """The token Secret. Without a value unless the user filled it on purpose.

    A template carries no ``data``/``stringData`` at all, so applying it (``kubectl apply``
    too) never overwrites a token that is already there.
    """
    obj: dict[str, object] = {"apiVersion": "v1", "kind": "Secret",
                              "metadata": meta(o, o.secret, "token", model=False), "type": "Opaque"}
    if o.token is not None:
        obj["stringData"] = {o.secret_key: o.token}
    return obj


def pvc(o: RenderOptions, name: str, size: int, component: str) -> dict[str, object]:
    """A PersistentVolumeClaim ``name`` of ``size`` bytes (rounded to GiB) with the options' access mode and class."""
    spec: dict[str, object] = {"accessModes": [o.access_mode], "volumeMode": "Filesystem",
                               "resources": {"requests": {"storage": gib_quantity(size)}}}
    if o.storage_class:
        spec["storageClassName"] = o.storage_class
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": meta(o, name, component, model=False),
            "spec": spec}


def model_cache_pvcs(o: RenderOptions) -> list[dict[str, object]]:
    """One per tenant (``--isolation pvc``), or one holding every tenant's folder (``subpath``)."""
    copies = len(o.tenants) if o.tenants and o.isolation == "subpath" else 1
    return [pvc(o, claim, o.size_bytes * copies, "cache") for claim in o.claims()]


def compile_cache_pvcs(o: RenderOptions) -> list[dict[str, object]]:
    """ReadWriteMany only (one cache every replica shares); with ReadWriteOnce each engine
    replica gets an emptyDir instead (``consumer``), so no PVC."""
    if not o.shared_compile_cache:
        return []
    return [pvc(o, o.compile_claim(t), o.compile_cache_size, "compile-cache") for t in o.targets()]
