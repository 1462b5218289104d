"""``RenderOptions`` → the manifest files: pure, deterministic, byte-stable. Writing is separate."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .._format import human_size
from ..errors import CacheError
from ._yaml import dump_all
from .consumer import engine_template
from .options import RenderOptions
from .sizing import GIB, HEADROOM_FRACTION, HEADROOM_MIN
from .storage import compile_cache_pvcs, model_cache_pvcs, secret
from .workloads import download_job, gc_cronjob, gc_rbac, serve_deployment, serve_service

__all__ = ["Manifest", "render", "spec_hash", "to_text", "write"]


@dataclass(frozen=True)
class Manifest:
    """One output file: comment lines, then its objects."""

    filename: str
    header: tuple[str, ...]
    objects: tuple[dict[str, object], ...]
    sensitive: bool = False
    """Holds a token value (a Secret filled on purpose): written with mode 0600."""

    def text(self) -> str:
        return dump_all(self.objects, self.header)


def spec_hash(obj: dict[str, object]) -> str:
    """A short hash of an object's ``spec``: ``apply`` recreates a Job only when it changed."""
    return hashlib.sha256(json.dumps(obj.get("spec"), sort_keys=True).encode()).hexdigest()[:16]


def _secret_header(o: RenderOptions) -> tuple[str, ...]:
    if o.filled:
        return (f"Secret {o.secret}: FILLED with a token (--token-file). Do not commit this file.",)
    return (
        f"Secret {o.secret}: a template without a value; applying it never overwrites a token already there.",
        "Fill it without putting the token in a file you keep:",
        f"  kubectl -n {o.namespace} create secret generic {o.secret} --from-file={o.secret_key}=PATH_TO_TOKEN_FILE",
        "or render it filled: modelcache k8s render ... --token-file PATH_TO_TOKEN_FILE   (or --token-file - for stdin)",
        "Public models need no token: the Job mounts the Secret as optional.",
    )


def _pvc_header(o: RenderOptions) -> tuple[str, ...]:
    lines = [f"Volumes for the model cache ({o.access_mode}); HF_HOME={o.mount_path}, cache at {o.mount_path}/hub."]
    if o.model_bytes is not None:
        lines.append(f"{o.repo_id}@{o.commit[:12]} ({o.profile}) is {human_size(o.model_bytes)} on the Hub; "
                     f"asked {o.size_bytes // GIB}Gi = size + max({int(HEADROOM_FRACTION * 100)}%, "
                     f"{HEADROOM_MIN // GIB}Gi), rounded up to a whole Gi.")
    if o.tenants and o.isolation == "subpath":
        lines.append(f"One volume for {len(o.tenants)} tenants, one folder (subPath tenants/NAME) each.")
    if o.compile_cache_size is not None:
        lines.append(f"The engine's compilation cache has its own volume ({o.compile_cache_env}).")
    return tuple(lines)


def render(o: RenderOptions) -> list[Manifest]:
    """Every file for ``o``, in apply order."""
    targets = o.targets()
    title = f"{o.repo_id} @ {o.commit}" + (f" (revision {o.revision})" if o.revision != o.commit else "")
    jobs = [download_job(o, t) for t in targets]
    for job in jobs:
        job["metadata"]["annotations"]["modelcache.io/spec-hash"] = spec_hash(job)  # type: ignore[index]
    out = [
        Manifest("secret.yaml", _secret_header(o), (secret(o),), sensitive=o.filled),
        Manifest("pvc.yaml", _pvc_header(o), (*model_cache_pvcs(o), *compile_cache_pvcs(o))),
    ]
    if o.serves:
        out.append(Manifest("serve.yaml", (
            "modelcache serve on the cache volume, for clusters without ReadWriteMany:",
            "engine pods copy the model from it into a pod-local volume (engine-template.yaml).",
        ), tuple(obj for t in targets for obj in (serve_deployment(o, t), serve_service(o, t)))))
    out.append(Manifest("download-job.yaml", (
        f"Downloads {title} into the cache, verified and resumable.",
        "Exit codes {2,3,4,7} (bad input, not found, token/gated, cache unusable) fail the Job at once.",
    ), tuple(jobs)))
    out.append(Manifest("engine-template.yaml", (
        f"How an engine pod waits for {o.repo_id} and reads it (HF_HUB_OFFLINE=1, read-only).",
        "Copy initContainers, volumes and the engine container's env/volumeMounts into your engine pod spec.",
    ), tuple(engine_template(o, t) for t in targets)))
    if o.gc_schedule is not None:
        out.append(Manifest("gc-cronjob.yaml", (f"modelcache gc on {o.gc_schedule!r}, one per cache volume.",),
                            tuple(obj for t in targets for obj in (*gc_rbac(o, t), gc_cronjob(o, t)))))
    return out


def to_text(manifests: Sequence[Manifest]) -> str:
    """All files as one YAML stream (``--output -``)."""
    return "---\n".join(m.text() for m in manifests)


def write(manifests: Sequence[Manifest], directory: Path) -> list[Path]:
    """Each file atomically; a filled Secret with mode 0600."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        paths = []
        for m in manifests:
            path = directory / m.filename
            tmp = path.with_name(f".{m.filename}.tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if m.sensitive else 0o644)
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(m.text())
            os.chmod(tmp, 0o600 if m.sensitive else 0o644)
            os.replace(tmp, path)
            paths.append(path)
        return paths
    except OSError as exc:
        raise CacheError(f"cannot write manifests to {directory}: {exc.strerror}", "check --output") from None
