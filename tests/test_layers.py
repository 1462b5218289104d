"""The package's shape, enforced: who may import whom (DESIGN.md "Shape").

cli/server/k8s → service → hub, cache → validation/settings/errors/protocol/files (and the
other no-I/O leaves). hub and cache never import each other; nothing imports a layer above
it; the import graph between top-level parts has no cycles. Imports inside functions count
too (a lazy import is still a dependency).
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "src" / "modelcache"

# A part's rank: a module may import parts of lower or equal rank only (equal: within its own part).
RANK = {
    "cli": 5,
    "server": 4, "k8s": 4, "doctor": 4, "sync": 4,
    "models": 3, "service": 3,
    "hub": 2, "cache": 2,
    "files": 1, "folders": 1, "diskwrite": 1, "_safe_read": 1, "progress": 1, "tokens": 1, "redact": 1, "profiles": 1, "hashing": 1, "protocol": 1,
    "validation": 0, "settings": 1, "errors": 0, "_format": 0, "_lazy": 0, "_httpx_cli": 0, "_demo_model": 0, "__main__": 6, "__init__": 6,
}
FORBIDDEN_PAIRS = {("hub", "cache"), ("cache", "hub")}
# leaves may use each other in this order only (no cycles among them)
LEAF_ORDER = ["errors", "diskwrite", "_format", "validation", "hashing", "protocol", "redact", "tokens", "settings", "_safe_read", "folders", "files",
              "profiles", "progress"]


def _part(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _imports() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = defaultdict(set)
    for path in PKG.rglob("*.py"):
        rel = path.relative_to(PKG.parent).with_suffix("")
        parts = list(rel.parts)
        is_pkg = parts[-1] == "__init__"
        if is_pkg:
            parts = parts[:-1]
        module = ".".join(parts)
        package = module if is_pkg else module.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    target = ".".join(base + ([node.module] if node.module else []))
                    names = [target] if node.module else [f"{target}.{a.name}" for a in node.names]
                elif node.module and node.module.startswith("modelcache"):
                    names = [node.module]
                else:
                    continue
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names if a.name.startswith("modelcache")]
            else:
                continue
            for name in names:
                graph[module].add(name)
    return graph


def test_no_layer_imports_a_layer_above_it() -> None:
    bad = []
    for module, targets in _imports().items():
        src = _part(module)
        for target in targets:
            dst = _part(target)
            if dst == src or dst == "__init__" and target == "modelcache":
                continue
            if dst not in RANK or src not in RANK:
                bad.append(f"{module} -> {target}: part not in RANK (add it to tests/test_layers.py)")
            elif src in LEAF_ORDER and dst in LEAF_ORDER:
                if LEAF_ORDER.index(dst) > LEAF_ORDER.index(src):
                    bad.append(f"{module} -> {target} (leaf order)")
            elif RANK[dst] > RANK[src] or (RANK[dst] == RANK[src] and src not in ("models", "service")):
                bad.append(f"{module} -> {target}")
            elif (src, dst) in FORBIDDEN_PAIRS:
                bad.append(f"{module} -> {target} (hub and cache never import each other)")
    assert bad == [], "\n".join(bad)


def test_the_package_root_is_imported_by_no_module() -> None:
    """``modelcache/__init__`` re-exports the API; importing it from inside makes cycles."""
    assert [m for m, ts in _imports().items() if "modelcache" in ts and m != "modelcache"] == []


def test_no_cycles_between_modules_of_a_part() -> None:
    graph = _imports()
    modules = set(graph)

    def resolve(target: str) -> str | None:
        while target and target not in modules:
            target = target.rpartition(".")[0]
        return target or None

    edges = {m: {r for t in ts if (r := resolve(t)) and r != m and not m.startswith(r + ".") and
                 not r.endswith("__init__")} for m, ts in graph.items()}
    # ignore package __init__ re-exports (a package imports its own modules)
    edges = {m: {t for t in ts if not m.startswith(t + ".") and not t.startswith(m + ".")} for m, ts in edges.items()}
    seen: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(node: str, stack: list[str]) -> None:
        seen[node] = 1
        for nxt in sorted(edges.get(node, ())):
            if seen.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt):] + [nxt] if nxt in stack else [node, nxt])
            elif nxt not in seen:
                visit(nxt, [*stack, nxt])
        seen[node] = 2

    for m in sorted(edges):
        if m not in seen:
            visit(m, [m])
    assert cycles == []
