"""``modelcache sync -f modelcache.yaml``: reconcile the cache with a declared set of models."""

from __future__ import annotations

import os
import random
import time
from pathlib import Path

import click

from ..errors import InvalidInput
from .common import CONTEXT, json_option, settings_of
from .output import emit

__all__ = ["register"]


@click.command(context_settings=CONTEXT)
@click.option("-f", "--file", "path", type=click.Path(path_type=Path, dir_okay=False), default=Path("modelcache.yaml"),
              show_default=True, help="The declared set of models (see `modelcache sync --schema`).")
@click.option("--dry-run", is_flag=True, help="Print the plan (what would be downloaded, pinned, freed, and why); change nothing.")
@click.option("--schema", "show_schema", is_flag=True, help="Print the JSON Schema of modelcache.yaml and exit.")
@click.option("--label-node", default=None, metavar="NODE",
              help="Node-local tier: label this node modelcache.io/<model-key>=<commit12> per ready model "
                   "(removed before GC/unpin can remove it). Must be the pod's own node ($NODE_NAME).")
@click.option("--kube-api", default=None, metavar="URL", help="The Kubernetes API for --label-node (default: in-cluster).")
@click.option("--kube-token-file", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Bearer token for --kube-api (default: the pod's ServiceAccount token).")
@click.option("--interval", default=None, metavar="DURATION",
              help="Run again every DURATION (e.g. 10m), re-reading the file each time; never exits.")
@click.option("--k8s-namespace", "namespaces", multiple=True, metavar="NS",
              help="GC keeps every revision a live pod in NS uses (as `gc --k8s-namespace`); repeatable.")
@json_option
@click.pass_context
def sync(ctx: click.Context, path: Path, dry_run: bool, show_schema: bool, as_json: bool, label_node: str | None,
         kube_api: str | None, kube_token_file: Path | None, interval: str | None, namespaces: tuple[str, ...]) -> None:
    """Make the cache hold exactly what modelcache.yaml declares: download what is missing, pin
    and register what is declared, unpin what no longer is, then apply the GC policy. The plan
    is printed first; a second run with nothing changed does nothing and says so."""
    if show_schema:
        click.echo((Path(__file__).parent.parent / "sync" / "schema.json").read_text())
        return
    if kube_api is not None and not kube_api.startswith(("http://", "https://")):
        raise InvalidInput(f"invalid --kube-api {kube_api!r}", "give a URL such as https://10.96.0.1:443")
    labeller = _labeller(label_node, kube_api, kube_token_file, bool(namespaces))
    in_use = _in_use(namespaces, kube_api, kube_token_file)
    if interval is None:
        ctx.exit(_sync_once(ctx, path, dry_run, as_json, labeller, in_use))
    from ..errors import ModelCacheError
    from ..settings import parse_duration

    seconds = parse_duration(interval, "--interval")
    if seconds < 1:
        raise InvalidInput(f"invalid --interval {interval!r}", "give at least 1s, e.g. 10m")
    while True:  # a DaemonSet's loop: one bad round (mirror down, a typo in the ConfigMap) is reported, not fatal
        try:
            code = _sync_once(ctx, path, dry_run, as_json, labeller, in_use)
        except ModelCacheError as exc:
            click.echo(f"sync: {exc.message}" + (f" (hint: {exc.hint})" if exc.hint else ""), err=True)
            code = exc.exit_code
        click.echo(f"sync: exit {code}; next run in {interval}", err=True)
        time.sleep(seconds * random.uniform(0.9, 1.1))  # 100 nodes started together drift apart


def _in_use(namespaces: tuple[str, ...], kube_api: str | None, token_file: Path | None):  # type: ignore[no-untyped-def]
    """``--k8s-namespace``: what live pods use, asked by GC before planning and before removing."""
    if not namespaces:
        return None
    from ..k8s.pods import SERVICE_ACCOUNT, InCluster, list_pod_uses
    from ..k8s.pods import in_use as protection

    if kube_api is not None:
        where: InCluster | None = InCluster(kube_api, str(token_file or f"{SERVICE_ACCOUNT}/token"),
                                            None if token_file else f"{SERVICE_ACCOUNT}/ca.crt")
    else:
        where = InCluster.from_env(os.environ)
        if where is not None and token_file is not None:
            where = InCluster(where.api, str(token_file), where.ca_path)
    from ..k8s.names import check_label

    for ns in namespaces:
        check_label(ns, "namespace", "--k8s-namespace")

    def in_use() -> dict[tuple[str, str], str]:
        uses, _notes = list_pod_uses(namespaces, in_cluster=where)
        return protection(uses)

    return in_use


def _labeller(node: str | None, kube_api: str | None, token_file: Path | None,  # type: ignore[no-untyped-def]
              k8s_namespaces: bool = False):
    """``--label-node``: the environment is read here, at the entry point (NODE_NAME, the in-cluster API)."""
    if node is None:
        if (kube_api or token_file) and not k8s_namespaces:
            raise InvalidInput("--kube-api/--kube-token-file need --label-node or --k8s-namespace",
                               "add --label-node $(NODE_NAME)")
        return None
    from ..sync.nodes import SA_DIR, NodeApi, NodeLabeller

    if kube_api is not None:
        api = NodeApi(kube_api, token_file or SA_DIR / "token", None if token_file else SA_DIR / "ca.crt")
    else:
        api = NodeApi.in_cluster(os.environ.get("KUBERNETES_SERVICE_HOST"), os.environ.get("KUBERNETES_SERVICE_PORT"))
        if token_file:
            api = NodeApi(api.url, token_file, api.ca_file)
    return NodeLabeller(api, node, os.environ.get("NODE_NAME") or None)


def _sync_once(ctx: click.Context, path: Path, dry_run: bool, as_json: bool, labeller,  # type: ignore[no-untyped-def]
               in_use=None) -> int:
    from ..progress import for_stream
    from ..service.model_cache import ModelCache
    from ..sync import load_spec
    from ..sync import sync as run_sync

    spec = load_spec(path)
    settings = settings_of(ctx)
    if spec.endpoint and not (ctx.find_root().obj or {}).get("endpoint"):
        settings = settings.with_overrides(endpoint=spec.endpoint)

    def show(plan) -> None:  # type: ignore[no-untyped-def]
        if not as_json:
            click.echo(f"sync {path} → {settings.cache_dir}" + (" (dry run)" if dry_run else ""), err=True)
            for line in plan.render():
                click.echo(line, err=True)

    with ModelCache(settings) as mc:
        result = run_sync(mc, spec, dry_run=dry_run, on_plan=show, progress=lambda _m: for_stream(), labeller=labeller,
                          in_use=in_use)
    if as_json:
        emit(result.to_dict())
    elif not dry_run:
        for o in result.outcomes:
            if not o.ok:
                click.echo(f"  ! {o.step.action} {o.step.target}: {o.message}", err=True)
        done = sum(1 for o in result.outcomes if o.ok)
        click.echo(f"sync: {done} step(s) done, {len(result.failed)} failed" if result.plan.changes or result.failed
                   else "sync: nothing to do", err=True)
    return result.exit_code


def register(cli: click.Group) -> None:
    """Add the ``sync`` command to ``cli``."""
    cli.add_command(sync)
