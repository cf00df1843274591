"""The package imports downward only: each top-level part of relssl may import its own layer or the
layers below, never above (function-local imports included), and no two modules import each other
in a cycle. Read from the source with the AST, so a lazy import cannot hide an edge."""
import ast
from pathlib import Path

import relssl

ROOT = Path(relssl.__file__).parent
# Lowest first: the folder tree follows the data path.
LAYERS = [
    {"errors", "version", "logs"},
    {"options", "files"},
    {"data"},
    {"graph", "metrics"},
    {"nn", "masking"},
    {"feat2vec"},
    {"objectives", "multitask"},
    {"train"},
    {"eval", "recsys"},
    {"embed"},
    {"predict"},  # applies a fine-tuned head to what embed represents
    {"api"},
    {"experiments"},
    {"bench", "bench_tasks", "bench_peers", "bench_recsys"},
    {"cli"},
    {"__main__", "relssl"},  # the package: its public names re-export the API
]
RANK = {part: rank for rank, parts in enumerate(LAYERS) for part in parts}


def module_name(path: Path) -> str:
    parts = ["relssl", *path.relative_to(ROOT).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports() -> dict[str, set[str]]:
    """Module -> the relssl modules it imports (``from relssl.x import y`` counts y when it is a module)."""
    modules = {module_name(p) for p in ROOT.rglob("*.py")}
    edges = {}
    for path in ROOT.rglob("*.py"):
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "relssl":
                found.add(node.module)
                found |= {f"{node.module}.{a.name}" for a in node.names} & modules
            elif isinstance(node, ast.Import):
                found |= {a.name for a in node.names if a.name.split(".")[0] == "relssl"}
        edges[module_name(path)] = found & modules
    return edges


def part(module: str) -> str:
    return module.split(".")[1] if "." in module else "relssl"


def test_every_part_has_a_layer():
    assert {part(m) for m in imports()} <= set(RANK), {part(m) for m in imports()} - set(RANK)


def test_imports_point_downward():
    upward = sorted(f"{m} -> {d}" for m, ds in imports().items() for d in ds
                    if RANK[part(d)] > RANK[part(m)] or (RANK[part(d)] == RANK[part(m)] and part(d) != part(m)))
    assert not upward, upward


def test_no_import_cycles():
    edges = imports()
    # a package's __init__ re-exporting its own modules is not a cycle of the code's design
    edges = {m: {d for d in ds if not (d.startswith(m + ".") and m in {module_name(p) for p in ROOT.rglob("__init__.py")})}
             for m, ds in edges.items()}
    state, cycles = {}, []

    def visit(m: str, path: list[str]) -> None:
        state[m] = "open"
        for d in sorted(edges.get(m, ())):
            if state.get(d) == "open":
                cycles.append(" -> ".join(path[path.index(d):] + [d]))
            elif d not in state:
                visit(d, path + [d])
        state[m] = "done"

    for m in sorted(edges):
        if m not in state:
            visit(m, [m])
    assert not cycles, cycles
