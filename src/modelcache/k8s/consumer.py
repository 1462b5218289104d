"""What an engine pod needs to start only on a complete cache: a PodTemplate to copy from.

Shared volume (ReadWriteMany): an init container runs ``modelcache check --wait`` on the
cache mounted read-only; the engine mounts it read-only too, with ``HF_HUB_CACHE`` on it and
``HF_HUB_OFFLINE=1``, while ``HF_HOME`` is a writable emptyDir (transformers writes
``$HF_HOME/modules`` for ``trust_remote_code`` models). Without ReadWriteMany (``serve``): a
first init container copies the model from ``modelcache serve`` into a pod-local volume
(verified as any download, with the token so gated models work), then the same check runs
on it. A compilation cache is a shared ReadWriteMany PVC, or one emptyDir per replica with
ReadWriteOnce.
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
    pod_extras,
    tmp_mount,
    tmp_volume,
    token_mount,
    token_volume,
)
from .options import RenderOptions, Target
from .pods import CONSUMER_LABEL
from .sizing import gib_quantity
from .workloads import serve_url

__all__ = ["HF_HOME_PATH", "engine_template"]

HF_HOME_PATH = "/var/cache/hf-home"
"""The engine's writable ``HF_HOME`` (an emptyDir): modules, tokens, small caches; never the model."""
USAGE = ("Copy initContainers, volumes, imagePullSecrets and the engine container's env, volumeMounts and "
         "resources into your engine's pod spec, and the template's labels and annotations into its pod metadata "
         "(GC keeps the revision while such a pod lives); pass the engine the pinned revision "
         "(e.g. vLLM --revision $(MODEL_REVISION)).")
_SMALL = {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "256Mi"}}


def _init(name: str, o: RenderOptions, command: list[str], mounts: list[dict[str, object]],
          offline: bool, hub_cache: str, ephemeral: str | None = None) -> dict[str, object]:
    """``check`` needs little; a ``download`` (serve mode) as much as the Job (buffers per connection)."""
    # HF_HOME: the cache's parent, as our own pods have it (nothing else is written there)
    values = {"HF_HOME": hub_cache.removesuffix("/hub"), "HF_HUB_CACHE": hub_cache,
              **({"HF_HUB_OFFLINE": "1"} if offline else {})}
    resources: dict[str, dict[str, str]] = {k: dict(v) for k, v in _SMALL.items()} if offline else \
        {"requests": {"cpu": o.cpu, "memory": o.memory}, "limits": {"memory": o.memory}}
    if ephemeral:
        resources["requests"]["ephemeral-storage"] = ephemeral
    return {"name": name, "image": o.image, "imagePullPolicy": "IfNotPresent", "command": command,
            "env": env(**values), "resources": resources,
            "securityContext": {"runAsNonRoot": True, "runAsUser": o.run_as_user, "runAsGroup": o.fs_group,
                                **container_security()},
            "volumeMounts": mounts}


def _ephemeral(o: RenderOptions) -> str | None:
    """What the pod's emptyDirs may hold: the model copy (serve) and a per-replica compile cache."""
    total = (o.size_bytes if o.serves else 0) + (o.compile_cache_size or 0 if not o.shared_compile_cache else 0)
    return gib_quantity(total) if total else None


def engine_template(o: RenderOptions, target: Target) -> dict[str, object]:
    """The engine PodTemplate of ``target``: the engine starts only once the model is complete.

    Init containers wait for the model (with ``serve``: first fetch it into a local volume); the
    engine sees the cache read-only, with the HF offline environment set.
    """
    hub = f"{o.mount_path}/hub"
    home = {"name": "hf-home", "emptyDir": {"sizeLimit": "1Gi"}}
    home_mount = {"name": "hf-home", "mountPath": HF_HOME_PATH}
    ephemeral = _ephemeral(o)
    if o.serves:
        local = {"name": CACHE_VOLUME, "emptyDir": {"sizeLimit": gib_quantity(o.size_bytes)}}
        rw = {"name": CACHE_VOLUME, "mountPath": o.mount_path}
        ro = {**rw, "readOnly": True}
        # The hop to serve is inside the cluster, over plain HTTP: the token is sent there on
        # purpose (serve checks it against the Hub for gated repos), never to anything else.
        fetch = download_command(o, serve_url(o, target), token=True, insecure_token=True)
        inits = [_init("fetch-model", o, fetch, [rw, tmp_mount(), token_mount()], offline=False, hub_cache=hub,
                       ephemeral=ephemeral),
                 _init("wait-for-model", o, check_command(o), [ro], offline=True, hub_cache=hub)]
        volumes: list[dict[str, object]] = [local, tmp_volume(), token_volume(o)]
        engine_mounts: list[dict[str, object]] = [ro]
    else:
        ro = cache_mount(o, target, read_only=True)
        # The check sees the whole volume (no subPath): the kubelet never creates a tenant's
        # folder as root; the engine's subPath mount is made once the check found the model.
        whole = {"name": CACHE_VOLUME, "mountPath": o.mount_path, "readOnly": True}
        check_hub = f"{o.mount_path}/{target.sub_path}/hub" if target.sub_path else hub
        inits = [_init("wait-for-model", o, check_command(o), [whole], offline=True, hub_cache=check_hub)]
        volumes = [cache_volume(target, read_only=True)]
        engine_mounts = [ro]
    volumes.append(home)
    engine_mounts.append(home_mount)
    engine_env = {"HF_HOME": HF_HOME_PATH, "HF_HUB_CACHE": hub, "HF_HUB_OFFLINE": "1", "MODEL_NAME": o.repo_id,
                  "MODEL_REVISION": o.commit}
    if o.compile_cache_size is not None:
        if o.shared_compile_cache:
            volumes.append({"name": "compile-cache", "persistentVolumeClaim": {"claimName": o.compile_claim(target)}})
        else:
            volumes.append({"name": "compile-cache", "emptyDir": {"sizeLimit": gib_quantity(o.compile_cache_size)}})
        engine_mounts.append({"name": "compile-cache", "mountPath": o.compile_cache_path})
        engine_env[o.compile_cache_env] = o.compile_cache_path
    engine: dict[str, object] = {"name": "engine", "image": o.engine_image, "env": env(**engine_env),
                                 "volumeMounts": engine_mounts}
    if ephemeral:
        engine["resources"] = {"requests": {"ephemeral-storage": ephemeral}}
    return {
        "apiVersion": "v1",
        "kind": "PodTemplate",
        "metadata": meta(o, f"{target.stem}-engine", "engine", target,
                         extra_annotations={"modelcache.io/usage": USAGE}),
        "template": {
            # GC lists pods by this label and keeps the annotated revision while the pod lives
            "metadata": {"labels": {**labels(o, "engine", target), CONSUMER_LABEL: "true"},
                         "annotations": annotations(o)},
            "spec": {**pod_extras(o, scheduling=False),
                     "securityContext": {"fsGroup": o.fs_group, "fsGroupChangePolicy": "OnRootMismatch"},
                     "initContainers": inits, "containers": [engine], "volumes": volumes},
        },
    }
