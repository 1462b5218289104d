"""``k8s render -f modelcache.yaml [--node-local PATH]``: the glue between the declared set
(``sync.spec``, ``sync.nodes``) and its manifests (``k8s.modelset``, ``k8s.nodelocal``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from ..errors import EndpointUnreachable, InvalidInput
from ..settings import TokenSource
from .common import settings_of
from .output import human_size

__all__ = ["render_set_command"]


def render_set_command(ctx: click.Context, path: Path, *, size: str, token: str | None, output: str, deadline: str,
                       ttl: str, check_wait: str, schedule: str | None, node_local: str | None, mirror_url: str | None,
                       interval: str, **kw: Any) -> None:
    """Resolve the set (commits of served models, sizes when ``--size auto``), render, write or print.

    ``token``: read by the caller from ``--token-file`` (it fills the Secret)."""
    from ..hub.client import HubClient
    from ..k8s import RenderOptions, to_text, write
    from ..k8s.modelset import SetModel, SetOptions, render_set, resolve_set
    from ..k8s.nodelocal import render_node_local
    from ..k8s.options import parse_duration
    from ..sync import load_spec
    from ..sync.nodes import check_unique_keys, label_key

    spec = load_spec(path)
    text = path.read_text(encoding="utf-8")
    if node_local is not None:
        check_unique_keys(spec.models)
    elif kw.get("access_mode") == "ReadWriteOnce":
        raise InvalidInput("a set on one ReadWriteOnce volume cannot serve engines on other nodes",
                           "use --access-mode ReadWriteMany, or --node-local PATH (each node's own disk)")
    models = [SetModel(m.repo, m.revision, m.commit, m.profile, m.include, m.exclude, m.name, m.repo_type,
                       label_key(m.repo, m.repo_type)) for m in spec.models]
    settings = settings_of(ctx)
    if spec.endpoint and not (ctx.find_root().obj or {}).get("endpoint"):
        settings = settings.with_overrides(endpoint=spec.endpoint)
    source = TokenSource(value=token, origin="--token-file") if token is not None else settings.token
    hub = HubClient(settings.endpoint, source, timeout=settings.timeout,
                    allow_insecure_token=settings.allow_insecure_token, network=settings.network)
    try:
        # node-local: no volume to size; sizes are looked up only for the header, when online
        need_size = node_local is None or not settings.offline
        models, size_bytes, model_bytes = resolve_set(models, size, offline=settings.offline, hub=hub,
                                                      need_size=need_size)
    except EndpointUnreachable as exc:
        raise EndpointUnreachable(exc.message, "render without the upstream: give --size SIZE and declare `commit:` "
                                  "for each served model (then --offline); or " + exc.hint) from None
    finally:
        hub.close()
    set_name = kw.pop("name") or "models"
    kw.pop("serve", None)
    kw.pop("profile", None)
    first = models[0] if models else SetModel("org/none")
    base = RenderOptions(repo_id=first.repo, commit=first.commit or "0" * 40, size_bytes=size_bytes,
                         model_bytes=model_bytes, token=token, name=set_name, serve=False,
                         deadline_seconds=parse_duration(deadline, "--deadline"), ttl_seconds=parse_duration(ttl, "--ttl"),
                         check_wait_seconds=parse_duration(check_wait, "--check-wait"), **kw)
    so = SetOptions(base, tuple(models), text, set_name=set_name, schedule=schedule, node_local=node_local,
                    mirror_url=mirror_url, interval=interval, model_bytes=model_bytes)
    manifests = render_node_local(so) if node_local is not None else render_set(so)
    if output == "-":
        click.echo(to_text(manifests), nl=False)
    else:
        for p in write(manifests, Path(output)):
            click.echo(str(p))
    count = sum(len(m.objects) for m in manifests)
    served = sum(1 for m in models if m.served)
    where = (f"node-local at {node_local}, from {mirror_url}" if node_local is not None else
             f"volume {size_bytes // 1024**3}Gi" + (f" for {human_size(model_bytes)} upstream + headroom"
                                                   if model_bytes is not None else " as given"))
    click.echo(f"rendered {count} objects for {len(models)} model(s) from {path} ({served} served); {where}", err=True)
