"""What an engine pod needs to start only on a complete cache: a PodTemplate to copy from.

Shared volume (ReadWriteMany): an init container runs ``modelcache check --wait`` on the
cache mounted read-only; the engine mounts it read-only too, with ``HF_HOME`` and
``HF_HUB_OFFLINE=1``. Without ReadWriteMany (``serve``): a first init container copies the
model from ``modelcache serve`` into a pod-local volume (verified as any download), then the
same check runs on it. An optional compilation cache gets its own writable volume.
"""

from __future__ import annotations

from ._pod import (
    CACHE_VOLUME,
    annotations,
    cache_mount,
    cache_volume,
    check_command,
    container_security,
    download_command,
    env,
    labels,
    meta,
    tmp_mount,
    tmp_volume,
)
from .options import RenderOptions, Target
from .pods import CONSUMER_LABEL
from .sizing import gib_quantity
from .workloads import serve_url

__all__ = ["engine_template"]

USAGE = ("Copy initContainers, volumes and the engine container's env and volumeMounts into your engine's pod "
         "spec, and the template's labels and annotations into its pod metadata (GC keeps the revision while "
         "such a pod lives); pass the engine the pinned revision (e.g. vLLM --revision $(MODEL_REVISION)).")
_SMALL = {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "256Mi"}}


def _init(name: str, o: RenderOptions, command: list[str], mounts: list[dict[str, object]],
          offline: bool) -> dict[str, object]:
    """``check`` needs little; a ``download`` (serve mode) as much as the Job (buffers per connection)."""
    values = {"HF_HOME": o.mount_path, **({"HF_HUB_OFFLINE": "1"} if offline else {})}
    resources = _SMALL if offline else {"requests": {"cpu": o.cpu, "memory": o.memory}, "limits": {"memory": o.memory}}
    return {"name": name, "image": o.image, "imagePullPolicy": "IfNotPresent", "command": command,
            "env": env(**values), "resources": resources,
            "securityContext": {"runAsNonRoot": True, "runAsUser": o.run_as_user, "runAsGroup": o.fs_group,
                                **container_security()},
            "volumeMounts": mounts}


def engine_template(o: RenderOptions, target: Target) -> dict[str, object]:
    if o.serves:
        local = {"name": CACHE_VOLUME, "emptyDir": {"sizeLimit": gib_quantity(o.size_bytes)}}
        rw = {"name": CACHE_VOLUME, "mountPath": o.mount_path}
        ro = {**rw, "readOnly": True}
        fetch = download_command(o, serve_url(o, target), token=False)
        inits = [_init("fetch-model", o, fetch, [rw, tmp_mount()], offline=False),
                 _init("wait-for-model", o, check_command(o), [ro], offline=True)]
        volumes: list[dict[str, object]] = [local, tmp_volume()]
        engine_mounts: list[dict[str, object]] = [ro]
    else:
        ro = cache_mount(o, target, read_only=True)
        inits = [_init("wait-for-model", o, check_command(o), [ro], offline=True)]
        volumes = [cache_volume(target, read_only=True)]
        engine_mounts = [ro]
    engine_env = {"HF_HOME": o.mount_path, "HF_HUB_OFFLINE": "1", "MODEL_NAME": o.repo_id, "MODEL_REVISION": o.commit}
    if o.compile_cache_size is not None:
        volumes.append({"name": "compile-cache", "persistentVolumeClaim": {"claimName": o.compile_claim(target)}})
        engine_mounts.append({"name": "compile-cache", "mountPath": o.compile_cache_path})
        engine_env[o.compile_cache_env] = o.compile_cache_path
    engine = {"name": "engine", "image": o.engine_image, "env": env(**engine_env), "volumeMounts": engine_mounts}
    return {
        "apiVersion": "v1",
        "kind": "PodTemplate",
        "metadata": meta(o, f"{target.stem}-engine", "engine", target,
                         extra_annotations={"modelcache.io/usage": USAGE}),
        "template": {
            # GC lists pods by this label and keeps the annotated revision while the pod lives
            "metadata": {"labels": {**labels(o, "engine", target), CONSUMER_LABEL: "true"},
                         "annotations": annotations(o)},
            "spec": {"securityContext": {"fsGroup": o.fs_group, "fsGroupChangePolicy": "OnRootMismatch"},
                     "initContainers": inits, "containers": [engine], "volumes": volumes},
        },
    }
