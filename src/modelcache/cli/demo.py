"""``modelcache demo``: the whole spine, offline, on the tiny model the package ships.

import → serve on loopback → download into a second cache → check both profiles → list.
"""

from __future__ import annotations

import shutil
import tempfile
from importlib import resources
from pathlib import Path

import click

from .._format import human_size
from ..errors import ModelCacheError
from ..server.background import running_server
from ..service.model_cache import ModelCache
from ..settings import Settings, TokenSource

__all__ = ["DEMO_REPO", "demo_model_dir", "run_demo"]

DEMO_REPO = "modelcache/tiny-llama"


def demo_model_dir() -> Path:
    """The folder of the tiny model shipped in the package."""
    return Path(str(resources.files("modelcache") / "_demo_model"))


def _step(n: int, text: str) -> None:
    click.echo(click.style(f"[{n}] ", bold=True) + text)


def run_demo(workdir: Path | None = None) -> int:
    """Run the demo in ``workdir`` (default: a temporary folder, removed after); returns the exit code.

    Starts a loopback server for the duration; prints each step. 0 when every check passed, else 1.
    """
    tmp = None
    if workdir is None:
        tmp = tempfile.mkdtemp(prefix="modelcache-demo-")
        workdir = Path(tmp)
    workdir.mkdir(parents=True, exist_ok=True)
    source_dir, target_dir = workdir / "source-cache", workdir / "node-cache"
    try:
        source = ModelCache(Settings(cache_dir=source_dir, offline=True))
        _step(1, f"import the bundled tiny model into {source_dir}")
        record = source.import_folder(demo_model_dir(), DEMO_REPO)
        click.echo(f"    {DEMO_REPO}@main → commit {record.commit} ({len(record.files)} files, "
                   f"{human_size(record.total_size)}; {sum(e.is_lfs for e in record.files.values())} LFS)")

        with running_server(source_dir) as url:
            _step(2, f"serve it as an HF-compatible endpoint at {url}")
            node = ModelCache(Settings(cache_dir=target_dir, endpoint=url, token=TokenSource()))
            with node:
                _step(3, f"download the tokenizer profile into {target_dir}")
                tok = node.download(DEMO_REPO, profile="tokenizer")
                click.echo(f"    {tok.files_fetched} files fetched, {human_size(tok.bytes_fetched)}")
                _step(4, "check both profiles (local disk only)")
                for profile in ("tokenizer", "full"):
                    r = node.check(DEMO_REPO, profile=profile)
                    click.echo(f"    {profile:9s} {'ready' if r.ready else 'not ready'}: {r.reason}")
                _step(5, "download the full profile (the tokenizer files are reused)")
                full = node.download(DEMO_REPO)
                click.echo(f"    {full.files_fetched} files fetched, {human_size(full.bytes_fetched)} → {full.snapshot}")

        _step(6, "check again with the server gone (an engine pod's init container)")
        ok = True
        for profile in ("tokenizer", "full"):
            for name, mc in (("source", source), ("node", ModelCache(Settings(cache_dir=target_dir, offline=True)))):
                r = mc.check(DEMO_REPO, profile=profile)
                ok &= r.ready
                click.echo(f"    {name:6s} {profile:9s} {'ready' if r.ready else 'NOT READY'}")
        same = all(
            (source_dir / p).read_bytes() == (target_dir / p).read_bytes()
            for p in (
                f"models--modelcache--tiny-llama/snapshots/{record.commit}/{f}" for f in record.files
            )
        )
        click.echo(f"    byte-identical to the source: {'yes' if same else 'NO'}")
        ok &= same

        _step(7, "list the node cache")
        for repo in ModelCache(Settings(cache_dir=target_dir, offline=True)).ls():
            for rev in repo.revisions:
                click.echo(f"    {repo.repo_id}  {rev.commit[:12]}  refs={','.join(rev.refs)}  "
                           f"{human_size(rev.size_on_disk)}  {rev.files} files  "
                           f"{'complete' if rev.complete else 'partial'}")
        click.echo(("demo passed" if ok else "demo FAILED") + (f" (workdir {workdir})" if tmp is None else ""))
        return 0 if ok else 1
    except ModelCacheError as exc:
        click.echo(f"demo failed: {exc}", err=True)
        return 1
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
