"""The download scenarios: what is downloaded, through which caps, by which tools.

Sizes and counts are multiplied by ``scale``. Scenarios 5 (serving) and 6 (cold mirror) are
not downloads by one tool; they live in :mod:`.serving` and :mod:`.mirror`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from . import sourcerepo
from .common import MB, REPOS, GiB, KiB, MiB, modelcache_defaults

__all__ = [
    "ALL_SCENARIOS", "CEILING", "CEILING_RANGES", "DOWNLOAD_SCENARIOS", "MIRROR", "SERVE", "Scenario",
    "build_scenarios", "modelcache_variants",
]

DOWNLOAD_SCENARIOS = (1, 2, 3, 4)
SERVE, MIRROR = 5, 6
ALL_SCENARIOS = (*DOWNLOAD_SCENARIOS, SERVE, MIRROR)

CEILING = "curl ranges → /dev/null (ceiling)"
CEILING_RANGES = 6  # parallel ranged requests per LFS file
PEERS = ["huggingface_hub", "hf_transfer", "hf_transfer x8 procs", "aria2c"]


@dataclass
class Scenario:
    """One download scenario: a generated repo behind a throttled upstream, and the tools to run."""

    num: int
    title: str
    repo_id: str
    files: list[tuple[str, int]]
    text_files: dict[str, bytes]
    per_conn_bps: float
    aggregate_bps: float
    latency_ms: float
    tools: list[str]
    description: str
    scale: float = 1.0
    root: Path = field(init=False)

    def __post_init__(self) -> None:
        self.root = REPOS / f"s{self.num}-x{self.scale:g}"

    @property
    def total_bytes(self) -> int:
        return sum(s for _, s in self.files) + sum(len(b) for b in self.text_files.values())

    @property
    def n_files(self) -> int:
        return len(self.files) + len(self.text_files)


def modelcache_variants(extra: tuple[int, ...] = (), default: int | None = None) -> list[str]:
    """The default, plus ``--connections 16`` when that is not the default, plus ``extra``.

    ``default`` is modelcache's default connection count (``Settings``) unless given.
    """
    if default is None:
        default = modelcache_defaults()["connections"]
    out = ["modelcache"]
    for n in (16, *extra):
        if n != default and f"modelcache -c{n}" not in out:
            out.append(f"modelcache -c{n}")
    return out


def build_scenarios(scale: float, *, variants: bool = True) -> dict[int, Scenario]:
    """Scenarios 1–4 at ``scale``; ``variants=False`` runs modelcache with its defaults only."""
    mc = modelcache_variants if variants else (lambda extra=(): ["modelcache"])
    sc: dict[int, Scenario] = {}
    shard = max(MiB, int(512 * MiB * scale))
    shards = [f"model-{i:05d}-of-00004.safetensors" for i in range(1, 5)]
    sc[1] = Scenario(
        1, "big shards, capped per connection", "bench/big-shards",
        [(s, shard) for s in shards], sourcerepo.model_text_files(shards, seed=1),
        per_conn_bps=50 * MB, aggregate_bps=1000 * MB, latency_ms=0,
        tools=[*mc((8, 32)), *PEERS, CEILING], scale=scale,
        description=f"4 x {shard / MiB:,.0f} MiB safetensors shards + config.json, tokenizer.json, index; "
                    f"50 MB/s per connection, 1 GB/s aggregate.",
    )
    n_small = max(10, int(round(500 * scale)))
    sc[2] = Scenario(
        2, "many small files, 20 ms latency", "bench/many-small",
        [(f"files/part-{i:05d}.bin", 64 * KiB) for i in range(1, n_small + 1)], {},
        per_conn_bps=0, aggregate_bps=0, latency_ms=20,
        tools=[*mc(), *PEERS], scale=scale,
        description=f"{n_small} files x 64 KiB (regular git files, not LFS); 20 ms before every answer; "
                    f"no bandwidth cap.",
    )
    big = max(MiB, int(GiB * scale))
    sc[3] = Scenario(
        3, "unthrottled loopback", "bench/unthrottled",
        [(f"model-{i:05d}-of-00002.safetensors", big) for i in (1, 2)], {},
        per_conn_bps=0, aggregate_bps=0, latency_ms=0,
        tools=[*mc(), *PEERS, "curl (2 in parallel)", "curl (sequential)"], scale=scale,
        description=f"2 x {big / MiB:,.0f} MiB, no caps, no latency.",
    )
    capped = max(MiB, int(128 * MiB * scale))
    sc[4] = Scenario(
        4, "slow connections under an aggregate cap", "bench/capped",
        [(f"model-{i:05d}-of-00002.safetensors", capped) for i in (1, 2)], {},
        per_conn_bps=10 * MB, aggregate_bps=80 * MB, latency_ms=0,
        tools=[*mc(), *PEERS], scale=scale,
        description=f"2 x {capped / MiB:,.0f} MiB; 10 MB/s per connection, 80 MB/s aggregate "
                    f"(a CDN that caps each connection, behind a link that caps the sum).",
    )
    return sc
