"""``RenderOptions`` → the manifest files: pure, deterministic, byte-stable. Writing is separate."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from urllib.parse import urlsplit
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .._format import human_size
from ..errors import CacheError
from ._yaml import dump_all
from .consumer import engine_template
from .mirror import mirror_objects, mirror_url
from .options import RenderOptions
from .sizing import GIB, HEADROOM_FRACTION, HEADROOM_MIN
from .storage import compile_cache_pvcs, model_cache_pvcs, secret
from .workloads import download_job, gc_cronjob, gc_rbac, serve_deployment, serve_service

__all__ = ["Manifest", "render", "render_warnings", "spec_hash", "to_text", "write"]


@dataclass(frozen=True)
class Manifest:
    """One output file: comment lines, then its objects."""

    filename: str
    header: tuple[str, ...]
    objects: tuple[dict[str, object], ...]
    sensitive: bool = False
    """Holds a token value (a Secret filled on purpose): written with mode 0600."""

    def text(self) -> str:
        """The file's YAML: ``# `` header lines, then the objects separated by ``---``."""
        return dump_all(self.objects, self.header)


def spec_hash(obj: dict[str, object]) -> str:
    """A short hash of an object's ``spec``: ``apply`` recreates a Job only when it changed."""
    return hashlib.sha256(json.dumps(obj.get("spec"), sort_keys=True).encode()).hexdigest()[:16]


def _secret_header(o: RenderOptions) -> tuple[str, ...]:
    return (f"Secret {o.secret}: FILLED with a token (--token-file). Do not commit this file.",)


def _token_lines(o: RenderOptions) -> tuple[str, ...]:
    """How to give the token when no Secret is rendered (the Job's header says it)."""
    if o.filled:
        return ()
    return (
        f"The token: no Secret is rendered (an empty one would make `kubectl create secret` fail). Before or after",
        "applying, create it without putting the token in a file you keep:",
        f"  kubectl -n {o.namespace} create secret generic {o.secret} --from-file={o.secret_key}=PATH_TO_TOKEN_FILE",
        "Public models need no token: the Secret is mounted as optional.",
    )


def _insecure(url: str | None) -> bool:
    if not url or not url.startswith("http://"):
        return False
    host = (urlsplit(url).hostname or "").lower()
    return not (host in ("localhost", "::1") or host.startswith("127."))


def render_warnings(o: RenderOptions) -> list[str]:
    """What the user should know about the rendered token paths (the CLI prints them)."""
    out = []
    if _insecure(o.job_endpoint) and not o.allow_insecure_token:
        out.append(f"--job-endpoint {o.job_endpoint} is plain HTTP: the Job will not send the token there, so a "
                   "gated model fails (exit 4); use https, or add --allow-insecure-token to send it in clear")
    elif _insecure(o.job_endpoint):
        out.append(f"--allow-insecure-token: the Job sends the token in clear to {o.job_endpoint}")
    if o.serves:
        how = (f"the tokens in Secret {o.serve_auth_tokens_secret}" if o.serve_auth_tokens_secret
               else o.auth_upstream)
        out.append("serve mode: engine pods send the token to the in-cluster serve Service over plain HTTP "
                   f"(serve checks it against {how} for gated repos); encrypt pod traffic "
                   "(mesh/CNI) if your cluster network is not trusted")
    return out


def _pvc_header(o: RenderOptions) -> tuple[str, ...]:
    lines = [f"Volumes for the model cache ({o.access_mode}); HF_HOME={o.mount_path}, cache at {o.mount_path}/hub."]
    if o.model_bytes is not None:
        lines.append(f"{o.repo_id}@{o.commit[:12]} ({o.profile}) is {human_size(o.model_bytes)} on the Hub; "
                     f"asked {o.size_bytes // GIB}Gi = size + max({int(HEADROOM_FRACTION * 100)}%, "
                     f"{HEADROOM_MIN // GIB}Gi), rounded up to a whole Gi.")
    if o.tenants and o.isolation == "subpath":
        lines.append(f"One volume for {len(o.tenants)} tenants, one folder (subPath tenants/NAME) each.")
    if o.shared_compile_cache:
        lines.append(f"The engine's compilation cache has its own ReadWriteMany volume ({o.compile_cache_env}), "
                     "shared by every replica: compiled once.")
    elif o.compile_cache_size is not None:
        lines.append(f"The engine's compilation cache ({o.compile_cache_env}) is an emptyDir per replica "
                     "(engine-template.yaml): a ReadWriteOnce volume cannot be shared across nodes.")
    return tuple(lines)


def render(o: RenderOptions) -> list[Manifest]:
    """Every file for ``o``, in apply order."""
    targets = o.targets()
    title = f"{o.repo_id} @ {o.commit}" + (f" (revision {o.revision})" if o.revision != o.commit else "")
    jobs = [download_job(o, t) for t in targets]
    for job in jobs:
        job["metadata"]["annotations"]["modelcache.io/spec-hash"] = spec_hash(job)  # type: ignore[index]
    out = [Manifest("secret.yaml", _secret_header(o), (secret(o),), sensitive=True)] if o.filled else []
    out.append(Manifest("pvc.yaml", _pvc_header(o), (*model_cache_pvcs(o), *compile_cache_pvcs(o))))
    if o.serves:
        out.append(Manifest("serve.yaml", (
            "modelcache serve on the cache volume, for clusters without ReadWriteMany:",
            "engine pods copy the model from it into a pod-local volume (engine-template.yaml).",
        ), tuple(obj for t in targets for obj in (serve_deployment(o, t), serve_service(o, t)))))
    if o.mirror:
        out.append(Manifest("mirror.yaml", (
            f"An HA read-through mirror of {o.mirror_upstream}: modelcache serve --upstream, {o.mirror_replicas} replicas",
            "on the shared volume (a file is fetched once across replicas), a PodDisruptionBudget, /metrics.",
            f"Point clients at HF_ENDPOINT={mirror_url(o, targets[0])}.",
        ), mirror_objects(o, targets[0])))
    out.append(Manifest("download-job.yaml", (
        f"Downloads {title} into the cache, verified and resumable.",
        "Exit codes {2,3,4,7} (bad input, not found, token/gated, cache unusable) fail the Job at once.",
        *_token_lines(o),
    ), tuple(jobs)))
    out.append(Manifest("engine-template.yaml", (
        f"How an engine pod waits for {o.repo_id} and reads it (HF_HUB_OFFLINE=1, HF_HUB_CACHE read-only, HF_HOME writable).",
        "Copy initContainers, volumes, imagePullSecrets and the engine container's env/volumeMounts/resources into your engine pod spec.",
    ), tuple(engine_template(o, t) for t in targets)))
    if o.gc_schedule is not None:
        out.append(Manifest("gc-cronjob.yaml", (f"modelcache gc on {o.gc_schedule!r}, one per cache volume.",),
                            tuple(obj for t in targets for obj in (*gc_rbac(o, t), gc_cronjob(o, t)))))
    return out


def to_text(manifests: Sequence[Manifest]) -> str:
    """All files as one YAML stream (``--output -``)."""
    return "---\n".join(m.text() for m in manifests)


def _write_one(directory: Path, m: Manifest) -> Path:
    """A temp file made with O_EXCL under an unpredictable name, mode 0600 from its first byte
    (``mkstemp``: a planted symlink or a file another user made is never written through), then
    renamed over the target. Only files without a token are widened to 0644, after writing."""
    fd, tmp = tempfile.mkstemp(prefix=f".{m.filename}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(m.text())
            fh.flush()
            os.fsync(fh.fileno())
        if not m.sensitive:
            os.chmod(tmp, 0o644)
        path = directory / m.filename
        os.replace(tmp, path)
        return path
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def write(manifests: Sequence[Manifest], directory: Path) -> list[Path]:
    """Each file atomically; a filled Secret with mode 0600 (never readable by others, not even briefly)."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        if not directory.is_dir():
            raise CacheError(f"cannot write manifests to {directory}: not a folder", "give --output a folder")
        written = [_write_one(directory, m) for m in manifests]
        if not any(m.filename == "secret.yaml" for m in manifests):
            stale = directory / "secret.yaml"
            if stale.is_file() and not stale.is_symlink():
                stale.unlink()  # a filled Secret from an earlier render must not be applied with these files
        return written
    except OSError as exc:
        raise CacheError(f"cannot write manifests to {directory}: {exc.strerror}", "check --output") from None
