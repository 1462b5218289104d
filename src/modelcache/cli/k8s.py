"""``modelcache k8s``: render, validate, apply and follow the Kubernetes side of a model cache."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import click

from ..errors import InvalidInput, ModelCacheError
from ..profiles import PROFILES
from ..settings import TokenSource
from .common import CONTEXT, json_option
from .common import settings_of as _settings
from .output import emit, human_size

__all__ = ["k8s"]


def _read_token(path: str) -> str:
    """The token from a file or stdin (``-``): never from an argument."""
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"cannot read the token file {path}: {getattr(exc, 'strerror', None) or exc}",
                           "give a file that holds the token alone, or - to read it from stdin") from None
    token = text.strip()
    if not token:
        raise InvalidInput(f"the token file {path} is empty", "give a file that holds the token alone")
    return token


@click.group(context_settings=CONTEXT)
def k8s() -> None:
    """Kubernetes: render manifests (Secret, PVC, download Job, engine template, serve, GC), validate, apply."""


@k8s.command(context_settings=CONTEXT)
@click.argument("repo_id", required=False)
@click.option("-f", "--file", "set_file", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Render for a declared set (modelcache.yaml) instead of REPO_ID: one volume, a sync Job, "
                   "an engine template per served model.")
@click.option("--schedule", default=None, metavar="CRON", help="With -f: run the sync as a CronJob on this schedule.")
@click.option("--node-local", "node_local", default=None, metavar="PATH",
              help="With -f: a DaemonSet syncs the set into PATH on each selected node and labels the node.")
@click.option("--mirror-url", default=None, metavar="URL", help="With --node-local: the cluster mirror nodes pull from.")
@click.option("--interval", "sync_interval", default="10m", show_default=True,
              help="With --node-local: how often each node syncs again.")
@click.option("--revision", default="main", show_default=True, help="Branch, tag or commit; pinned to a commit.")
@click.option("--namespace", "-n", default="default", show_default=True)
@click.option("--name", default="", help="Stem of this model's object names (default: from the repo name).")
@click.option("--pvc", default="model-cache", show_default=True, help="The cache volume's PVC name.")
@click.option("--storage-class", default=None, help="StorageClass (default: the cluster's default).")
@click.option("--access-mode", type=click.Choice(["ReadWriteMany", "ReadWriteOnce"]), default="ReadWriteMany",
              show_default=True)
@click.option("--size", default="auto", show_default=True,
              help="PVC size (e.g. 200Gi), or auto: the model's size on the Hub + max(20%, 10Gi), whole Gi.")
@click.option("--secret", default="hf-token-secret", show_default=True, help="The token Secret's name.")
@click.option("--token-file", "fill_from", default=None, metavar="FILE|-",
              help="Fill the Secret with the token in FILE (- = stdin). On purpose only: the value lands in the output.")
@click.option("--image", default="modelcache:0.1.0", show_default=True, help="modelcache's image (see Dockerfile).")
@click.option("--engine-image", default="vllm/vllm-openai:latest", show_default=True,
              help="The engine container's image in engine-template.yaml.")
@click.option("--mount-path", default="/model-store", show_default=True, help="Where the cache is mounted (HF_HOME).")
@click.option("--profile", type=click.Choice(PROFILES), default="full", show_default=True)
@click.option("--output", "-o", default="-", show_default=True, metavar="DIR|-", help="A folder for the files, or - for stdout.")
@click.option("--job-endpoint", default=None, help="HF-compatible mirror the Job downloads from (default: huggingface.co).")
@click.option("--run-as-user", type=int, default=1000, show_default=True)
@click.option("--fs-group", type=int, default=1000, show_default=True, help="Group owning the cache files; engines join it.")
@click.option("--backoff-limit", type=int, default=4, show_default=True)
@click.option("--deadline", default="6h", show_default=True, help="The Job's activeDeadlineSeconds (e.g. 90m, 6h).")
@click.option("--ttl", default="7d", show_default=True, help="ttlSecondsAfterFinished of the Job.")
@click.option("--cpu", default="2", show_default=True, help="The Job's CPU request.")
@click.option("--memory", default="2Gi", show_default=True, help="The Job's memory request and limit.")
@click.option("--check-wait", default="1h", show_default=True, help="How long the engine's init container waits.")
@click.option("--serve/--no-serve", default=None, help="Render modelcache serve (default: with ReadWriteOnce).")
@click.option("--serve-port", type=int, default=8080, show_default=True)
@click.option("--gc-schedule", default=None, metavar="CRON", help="Render a GC CronJob on this schedule, e.g. '30 3 * * *'.")
@click.option("--gc-max-age", default=None, metavar="AGE", help="GC: remove revisions unused this long (e.g. 30d).")
@click.option("--gc-max-size", default=None, metavar="SIZE", help="GC: shrink each cache to this size (e.g. 800GiB).")
@click.option("--gc-keep-last", type=int, default=None, metavar="N", help="GC: keep at most N revisions per repo.")
@click.option("--compile-cache", "compile_cache", default=None, metavar="SIZE",
              help="Also a PVC for the engine's compilation cache, e.g. 50Gi.")
@click.option("--compile-cache-pvc", default="compilation-cache", show_default=True)
@click.option("--compile-cache-path", default="/compile-cache", show_default=True)
@click.option("--compile-cache-env", default="VLLM_CACHE_ROOT", show_default=True)
@click.option("--tenant", "tenants", multiple=True, help="A tenant with its own cache (repeatable).")
@click.option("--isolation", type=click.Choice(["pvc", "subpath"]), default="pvc", show_default=True,
              help="Tenants: one PVC each, or one PVC with a subPath each.")
@click.option("--allow-insecure-token", is_flag=True, default=False,
              help="Let the Job send the token to a plain-HTTP --job-endpoint (in clear; off by default).")
@click.option("--ca-bundle", default=None, metavar="configmap/NAME|secret/NAME",
              help="A CA bundle for TLS to the Hub/mirror (mounted; SSL_CERT_FILE and REQUESTS_CA_BUNDLE).")
@click.option("--ca-bundle-key", default="ca.crt", show_default=True, help="The key holding the bundle.")
@click.option("--proxy", default=None, metavar="URL", help="HTTP(S) proxy for the pods that reach the Hub.")
@click.option("--no-proxy", "no_proxy", multiple=True, metavar="HOST",
              help="Extra NO_PROXY entries (in-cluster .svc names and loopback are always there); repeatable.")
@click.option("--serve-auth-upstream", default=None, metavar="URL",
              help="Where serve checks callers' tokens for gated repos (default: --job-endpoint or huggingface.co).")
@click.option("--serve-auth-tokens-secret", default=None, metavar="NAME",
              help="Air-gapped: serve accepts the tokens listed in this Secret (key 'tokens') for gated repos.")
@click.option("--image-pull-secret", "image_pull_secrets", multiple=True, metavar="NAME",
              help="imagePullSecrets for our pods and the engine template (repeatable).")
@click.option("--node-selector", "node_selector", multiple=True, metavar="KEY=VALUE",
              help="nodeSelector for our pods: Job, serve, mirror, GC (repeatable).")
@click.option("--toleration", "tolerations", multiple=True, metavar="KEY[=VALUE][:EFFECT]",
              help="A toleration for our pods (repeatable), e.g. dedicated=infra:NoSchedule.")
@click.option("--env", "env_vars", multiple=True, metavar="NAME=VALUE",
              help="An extra environment variable for our containers (repeatable).")
@click.option("--mirror", is_flag=True, default=False,
              help="Also render an HA read-through mirror (serve --upstream): Deployment, Service, PDB (ReadWriteMany).")
@click.option("--mirror-upstream", default="https://huggingface.co", show_default=True, metavar="URL")
@click.option("--mirror-replicas", type=int, default=2, show_default=True)
@click.option("--mirror-workers", type=int, default=2, show_default=True, help="serve --workers per replica.")
@click.pass_context
def render(ctx: click.Context, repo_id: str | None, revision: str, size: str, fill_from: str | None, output: str,
           deadline: str, ttl: str, check_wait: str, compile_cache: str | None, gc_max_age: str | None,
           gc_max_size: str | None, gc_keep_last: int | None, tenants: tuple[str, ...], set_file: Path | None,
           schedule: str | None, node_local: str | None, mirror_url: str | None, sync_interval: str, **kw: Any) -> None:
    """Render the manifests for REPO_ID (revision pinned to a commit, volume sized), or for the
    declared set of models in -f modelcache.yaml."""
    if set_file is not None:
        if repo_id is not None:
            raise InvalidInput("give REPO_ID or -f FILE, not both", "the file declares the models")
        other = [flag for flag, given in (("--revision", revision != "main"), ("--tenant", bool(tenants)),
                                          ("--gc-schedule", kw.get("gc_schedule") is not None),
                                          ("--compile-cache", compile_cache is not None), ("--mirror", kw.get("mirror")),
                                          ("--serve", bool(kw.get("serve")))) if given]
        if other:
            raise InvalidInput(f"{other[0]} does not apply with -f", "the file declares revisions and the GC policy; "
                               "render a mirror or serve for one model without -f")
        from .k8s_set import render_set_command

        token = _read_token(fill_from) if fill_from is not None else None
        render_set_command(ctx, set_file, size=size, token=token, output=output, deadline=deadline, ttl=ttl,
                           check_wait=check_wait, schedule=schedule, node_local=node_local, mirror_url=mirror_url,
                           interval=sync_interval, **kw)
        return
    if repo_id is None:
        raise InvalidInput("give REPO_ID, or -f modelcache.yaml for a declared set", "e.g. k8s render Qwen/Qwen3-32B")
    unused = [flag for flag, given in (("--schedule", schedule), ("--node-local", node_local),
                                       ("--mirror-url", mirror_url)) if given]
    if unused:
        raise InvalidInput(f"{unused[0]} needs -f modelcache.yaml", "add -f FILE")
    from ..hub.client import HubClient
    from ..k8s import RenderOptions, resolve, to_text, write
    from ..k8s import render as render_manifests
    from ..k8s.render import render_warnings
    from ..k8s.options import parse_duration
    from ..k8s.sizing import parse_quantity
    from ..settings import parse_size

    if gc_max_age is not None:
        parse_duration(gc_max_age, "--gc-max-age")
    if gc_max_size is not None:
        parse_size(gc_max_size, "--gc-max-size")
    if gc_keep_last is not None and gc_keep_last < 1:
        raise InvalidInput(f"invalid --gc-keep-last {gc_keep_last}", "give 1 or more")
    gc_args = tuple(a for flag, v in (("--max-age", gc_max_age), ("--max-size", gc_max_size),
                                      ("--keep-last", gc_keep_last)) if v is not None for a in (flag, str(v)))
    if gc_args and not kw.get("gc_schedule"):
        raise InvalidInput("--gc-max-age/--gc-max-size/--gc-keep-last need --gc-schedule", "add --gc-schedule '30 3 * * *'")
    token = _read_token(fill_from) if fill_from is not None else None
    settings = _settings(ctx)
    source = TokenSource(value=token, origin="--token-file") if token is not None else settings.token
    hub = HubClient(settings.endpoint, source, timeout=settings.timeout,
                    allow_insecure_token=settings.allow_insecure_token, network=settings.network)
    try:
        resolved = resolve(repo_id, revision, size, kw["profile"], offline=settings.offline, hub=hub)
    finally:
        hub.close()
    options = RenderOptions(
        repo_id=repo_id, commit=resolved.commit, revision=revision, size_bytes=resolved.size_bytes,
        model_bytes=resolved.model_bytes, token=token, gc_args=gc_args, tenants=tenants,
        deadline_seconds=parse_duration(deadline, "--deadline"), ttl_seconds=parse_duration(ttl, "--ttl"),
        check_wait_seconds=parse_duration(check_wait, "--check-wait"),
        compile_cache_size=parse_quantity(compile_cache, "--compile-cache") if compile_cache else None,
        **kw,
    )
    manifests = render_manifests(options)
    for warning in render_warnings(options):
        click.echo(f"warning: {warning}", err=True)
    count = sum(len(m.objects) for m in manifests)
    if output == "-":
        click.echo(to_text(manifests), nl=False)
    else:
        paths = write(manifests, Path(output))
        for p in paths:
            click.echo(str(p))
    sized = (f"{options.size_bytes // 1024**3}Gi for {human_size(resolved.model_bytes)} on the Hub + headroom"
             if resolved.model_bytes is not None else f"{options.size_bytes // 1024**3}Gi as given")
    click.echo(f"rendered {count} objects for {repo_id}@{resolved.commit[:12]}; volume {sized}"
               + ("; the Secret holds the token" if token else
                  f"; no Secret rendered (for a gated model: kubectl -n {options.namespace} create secret generic "
                  f"{options.secret} --from-file={options.secret_key}=PATH)"), err=True)


def _files(paths: tuple[str, ...]) -> list[Path]:
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted([*p.glob("*.yaml"), *p.glob("*.yml")])
            if not found:
                raise InvalidInput(f"{p} holds no .yaml files", "give rendered manifest files or their folder")
            out += found
        else:
            out.append(p)
    return out


@k8s.command(context_settings=CONTEXT)
@click.argument("paths", nargs=-1, required=True, metavar="FILE|DIR...")
@click.option("--kubernetes-version", default=None,
              help="Validate against this version, or 'all' for every supported one (default: the oldest supported).")
@json_option
def validate(paths: tuple[str, ...], kubernetes_version: str | None, as_json: bool) -> None:
    """Strict schema validation of every object in FILE... (kubernetes-validate, offline)."""
    from ..k8s.validate import (
        load_documents,
        schema_version,
        supported_versions,
        validate_objects,
        validator_version,
    )

    versions = supported_versions() if kubernetes_version == "all" else [schema_version(kubernetes_version)]
    version = ",".join(versions) if len(versions) > 1 else versions[0]
    items = []
    for path in _files(paths):
        items += [(f"{path}#{i}", doc) for i, doc in enumerate(load_documents(path))]
    problems = []
    for v in versions:
        found = validate_objects(items, v)
        problems += [p if len(versions) == 1 else type(p)(p.source, p.obj, f"[{v}] {p.message}") for p in found]
    summary = {"kubernetes_version": version, "validator": f"kubernetes-validate {validator_version()}",
               "strict": True, "objects": len(items), "problems": [p.__dict__ for p in problems]}
    if as_json:
        emit(summary)
    else:
        for p in problems:
            click.echo(f"invalid: {p.source} {p.obj}: {p.message}", err=True)
        click.echo(f"{len(items) - len({p.source for p in problems})}/{len(items)} objects valid against Kubernetes "
                   f"{version} ({summary['validator']}, strict)", err=bool(problems))
    if problems or not items:
        ctx = click.get_current_context()
        ctx.exit(1)


def _in_cluster() -> bool:
    return bool(os.environ.get("KUBERNETES_SERVICE_HOST"))


def _cluster_options(f):  # type: ignore[no-untyped-def]
    f = click.option("--context", "kube_context", default=None, help="kubeconfig context.")(f)
    return click.option("--kubeconfig", default=None, type=click.Path(dir_okay=False),
                        help="kubeconfig file (default: KUBECONFIG, ~/.kube/config, or in-cluster).")(f)


@k8s.command(context_settings=CONTEXT)
@click.argument("paths", nargs=-1, required=True, metavar="FILE|DIR...")
@_cluster_options
@click.option("--wait/--no-wait", default=True, show_default=True, help="Follow the download Job to its end.")
@click.option("--timeout", default="6h", show_default=True, help="How long to follow it (the Job goes on after).")
@click.option("--interval", type=click.FloatRange(min=0.01), default=5.0, show_default=True, help="Seconds between polls.")
@click.option("--force-conflicts", is_flag=True, default=False,
              help="Take over fields another manager changed (kubectl edit, an autoscaler) instead of stopping.")
def apply(paths: tuple[str, ...], kubeconfig: str | None, kube_context: str | None, wait: bool, timeout: str,
          interval: float, force_conflicts: bool) -> None:
    """Apply rendered manifests (server-side apply), then follow the download Job."""
    from ..k8s.apply import apply_objects, wait_for_job
    from ..k8s.cluster import KINDS, KubeApi
    from ..k8s.options import parse_duration
    from ..k8s.validate import load_documents

    seconds = parse_duration(timeout, "--timeout")
    objects = [doc for path in _files(paths) for doc in load_documents(path)]
    for obj in objects:
        meta = obj.get("metadata") if isinstance(obj.get("metadata"), dict) else {}
        if obj.get("kind") in ("ClusterRole", "ClusterRoleBinding"):
            raise InvalidInput(f"cannot apply {obj.get('kind')}/{meta.get('name')}: cluster-scoped RBAC (the node-local "  # type: ignore[union-attr]
                               "tier) is not applied by modelcache", "apply that folder with kubectl apply -f DIR "
                               "(it needs cluster-admin rights anyway)")
        if obj.get("kind") not in KINDS or not meta.get("name") or not meta.get("namespace"):  # type: ignore[union-attr]
            raise InvalidInput(f"cannot apply {obj.get('kind')}/{meta.get('name')}: not an object `k8s render` makes",  # type: ignore[union-attr]
                               "apply the files `modelcache k8s render --output DIR` wrote")
    api = KubeApi(kubeconfig, kube_context, in_cluster=_in_cluster())
    echo = lambda line: click.echo(line, err=True)
    result = apply_objects(api, objects, echo, force=force_conflicts)
    if wait:
        for ns, name in result.jobs:
            wait_for_job(api, ns, name, echo, timeout=seconds, interval=interval)


@k8s.command(context_settings=CONTEXT)
@click.argument("repo_id")
@click.option("--namespace", "-n", default="default", show_default=True)
@click.option("--tenant", default=None, help="Only this tenant's Job.")
@_cluster_options
@json_option
def status(repo_id: str, namespace: str, tenant: str | None, kubeconfig: str | None, kube_context: str | None,
           as_json: bool) -> None:
    """The download Job(s) of REPO_ID: complete, running (with progress) or failed (with the reason)."""
    from ..k8s.apply import explain, job_progress, job_state, pending_reason
    from ..k8s.pending import diagnose_job_events
    from ..k8s.cluster import KubeApi
    from ..k8s.names import check_label, label_value
    from ..validation import validate_repo_id

    validate_repo_id(repo_id)
    check_label(namespace, "namespace", "--namespace")
    selector = f"app.kubernetes.io/component=download,modelcache.io/model={label_value(repo_id)}"
    if tenant:
        selector += f",modelcache.io/tenant={check_label(tenant, 'tenant', '--tenant')}"
    api = KubeApi(kubeconfig, kube_context, in_cluster=_in_cluster())
    rows = []
    worst = 0
    for job in api.list("Job", namespace, selector):
        name = job["metadata"]["name"]
        state = job_state(job)
        row: dict[str, Any] = {"job": name, "state": state.phase,
                               "commit": job["metadata"].get("annotations", {}).get("modelcache.io/commit")}
        if state.phase == "running":
            row["progress"] = job_progress(api, namespace, name)
            if not row["progress"]:
                pods = api.pods(namespace, f"job-name={name}")
                reasons = [pending_reason(api, namespace, pod) for pod in pods] if pods else \
                    [diagnose_job_events(name, api.events(namespace, "Job", name))]
                found = next((r for r in reasons if r), None)
                if found:
                    row.update(state="pending", reason=found.reason, message=found.message, hint=found.hint)
            worst = max(worst, 1)
        elif state.phase == "failed":
            found = explain(api, namespace, name, job)
            if found:
                row.update(reason=found.reason, message=found.message, hint=found.hint)
            worst = max(worst, found.exit_code if found else 1)
        rows.append(row)
    if not rows:
        raise ModelCacheError(f"no download Job for {repo_id} in namespace {namespace}",
                           "render and apply one: modelcache k8s render ... --output DIR && modelcache k8s apply DIR")
    if as_json:
        emit({"repo_id": repo_id, "namespace": namespace, "jobs": rows})
    else:
        for row in rows:
            line = f"{row['job']}: {row['state']}"
            if row.get("progress"):
                line += f" — {row['progress']}"
            if row.get("message"):
                line += f" — {row['message']}\n  hint: {row['hint']}"
            click.echo(line)
    click.get_current_context().exit(worst)
