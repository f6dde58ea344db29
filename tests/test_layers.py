"""Dependencies point one way: a module may import only from floors below its own, and no import
circles. Read from the source (every import statement, including the lazy ones inside functions),
so an import that would only fire at run time still counts."""

from __future__ import annotations

import ast
from pathlib import Path

import mllmrec

ROOT = Path(mllmrec.__file__).parent

# Lowest first. A unit is a top-level module or package of mllmrec; it may import units listed
# before it (and itself). Stages sit above what they read: the store below every stage; the
# search index below serving (distill); FeatureProvider and exporters above distill, whose runs
# they read; tiny test models, the demo and the CLI on top.
FLOORS: list[tuple[str, ...]] = [
    ("__init__", "errors", "types", "lazy", "fsutil", "dist"),
    ("config",),
    ("metrics", "fusion"),
    ("artifacts",),
    ("filecheck", "ids"),
    ("store",),
    ("catalog",),
    ("datasets",),
    ("backbone",),
    ("prompts",),
    ("embed", "recsys"),
    ("train",),
    ("index",),
    ("distill",),
    ("features",),
    ("testing",),
    ("demo",),
    ("cli",),
]
FLOOR = {unit: n for n, units in enumerate(FLOORS) for unit in units}


def _unit(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _runtime_nodes(tree: ast.AST):
    """Every node except those under `if TYPE_CHECKING:` (annotations only, never executed)."""
    stack = [tree]
    while stack:
        node = stack.pop()
        yield node
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                stack.extend(child.orelse)
            else:
                stack.append(child)


def _imports() -> dict[str, set[str]]:
    """{module name: mllmrec modules it imports} for every file of the package."""
    graph: dict[str, set[str]] = {}
    for f in ROOT.rglob("*.py"):
        rel = f.relative_to(ROOT.parent).with_suffix("")
        name = ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)
        deps: set[str] = set()
        for node in _runtime_nodes(ast.parse(f.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.ImportFrom)
                and node.module
                and node.level == 0
                and node.module.startswith("mllmrec")
            ):
                deps.add(node.module)
                deps.update(
                    f"{node.module}.{a.name}"
                    for a in node.names
                    if (ROOT.parent / node.module.replace(".", "/") / a.name).exists()
                    or (ROOT.parent / f"{node.module.replace('.', '/')}/{a.name}.py").exists()
                )
            elif isinstance(node, ast.Import):
                deps.update(a.name for a in node.names if a.name.startswith("mllmrec"))
        graph[name] = deps - {name}
    return graph


def test_every_unit_has_a_floor():
    units = {_unit(m) for m in _imports()} | {"__init__"}
    assert units <= set(FLOOR), f"give these a floor in FLOORS: {sorted(units - set(FLOOR))}"


def test_lower_floors_never_import_higher_ones():
    bad = []
    for mod, deps in _imports().items():
        src = _unit(mod)
        for dep in deps:
            dst = _unit(dep)
            if dst != src and FLOOR[dst] >= FLOOR[src]:
                bad.append(f"{mod} ({src}, floor {FLOOR[src]}) imports {dep} ({dst}, floor {FLOOR[dst]})")
    assert not bad, "imports that point up or sideways:\n" + "\n".join(sorted(bad))


def test_no_import_circles():
    graph = {m: {d for d in deps if d in _imports_cache()} for m, deps in _imports_cache().items()}
    seen: dict[str, int] = {}  # 1 = on the current path, 2 = done
    cycles: list[list[str]] = []

    def visit(m: str, path: list[str]) -> None:
        seen[m] = 1
        for d in sorted(graph[m]):
            if seen.get(d) == 1:
                cycles.append([*path[path.index(d) :], d] if d in path else [m, d])
            elif d not in seen:
                visit(d, [*path, d])
        seen[m] = 2

    for m in sorted(graph):
        if m not in seen:
            visit(m, [m])
    # A package's __init__ re-exporting its own submodules is not a circle of behaviour.
    real = [
        c
        for c in cycles
        if not any(a.startswith(b + ".") or b.startswith(a + ".") for a, b in zip(c, c[1:], strict=False))
    ]
    assert not real, "import circles:\n" + "\n".join(" -> ".join(c) for c in real)


_CACHE: dict[str, set[str]] = {}


def _imports_cache() -> dict[str, set[str]]:
    if not _CACHE:
        _CACHE.update(_imports())
    return _CACHE
