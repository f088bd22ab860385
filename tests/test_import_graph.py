"""The modules of ``wsr_bench`` import each other without a cycle, and each part imports only the layers that
``docs/architecture.md`` allows it (:data:`MAY_IMPORT`).

Every module is parsed (not imported) with :mod:`ast`, and each import of another ``wsr_bench`` module is an edge:
module-level and function-level imports alike (a lazy import inside a function is still a dependency, and the usual
way a cycle hides), except those under ``if TYPE_CHECKING:``, which never run. ``from wsr_bench.x import y`` is an
edge to ``wsr_bench.x.y`` when that is a module, else to ``wsr_bench.x``; ``import wsr_bench.x.y`` is an edge to
``wsr_bench.x.y``. The parent packages Python runs on the way (``wsr_bench/__init__``, ``wsr_bench/x/__init__``)
are not edges: every submodule would otherwise sit in a cycle with a package ``__init__`` that re-exports it. So a
package ``__init__`` pointing down at its own submodules needs no special case; one that a submodule imports by name
(``from wsr_bench.x import name``, with ``x/__init__`` importing that submodule) is a real cycle and is reported.
The one special case is :data:`ALLOWED_EDGES`: single edges, each named with the cycle it closes and how to break it.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = "wsr_bench"
ROOT = Path(__file__).resolve().parents[1] / PACKAGE

#: Edges left out of the check, each closing a known cycle that is harmless today and that a change of the importing
#: module would break; delete the entry then (a stale entry fails ``test_allowed_edges_still_exist``).
ALLOWED_EDGES: dict[tuple[str, str], str] = {}


#: The layers of docs/architecture.md: the parts each part of the package may import (a part is a top-level module or
#: sub-package; ``wsr_bench`` is the root ``__init__``). Keep the two in step: a new part, or a new kind of edge, is a
#: design decision to write down there first.
FOUNDATION = {"wsr_bench", "_compat", "epsilon", "rules", "infra", "config"}
MAY_IMPORT: dict[str, set[str]] = {
    # foundation: torch-free names and rules, infrastructure, the config
    "epsilon": set(),
    "rules": {"epsilon"},
    "infra": {"rules"},
    "config": {"epsilon", "rules", "infra"},
    "_compat": {"infra"},
    "wsr_bench": {"_compat"},
    # building blocks: each imports the foundation and the blocks named here, never a job
    "search_space": FOUNDATION,
    "data": FOUNDATION,
    "attacks": FOUNDATION,
    "leaderboard": FOUNDATION,
    "models": FOUNDATION | {"search_space"},
    "estimators": FOUNDATION | {"attacks", "search_space"},
    "train": FOUNDATION | {"attacks", "data", "models"},
    "evaluate": FOUNDATION | {"attacks", "data", "models", "leaderboard"},
    "search": FOUNDATION | {"search_space", "models", "estimators", "train", "data", "attacks"},
    # jobs: the stages and the recipes over them (run, zoo, eval)
    "jobs": FOUNDATION | {"search_space", "data", "attacks", "leaderboard", "models", "estimators", "train",
                          "evaluate", "search"},
    # the command line, over everything
    "cli": FOUNDATION | {"search_space", "data", "attacks", "leaderboard", "models", "estimators", "train",
                         "evaluate", "search", "jobs"},
}


def part_of(module: str) -> str:
    """The part a module belongs to: ``wsr_bench.evaluate.spectrum`` -> ``evaluate``, ``wsr_bench`` -> itself."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def _modules(root: Path, package: str) -> dict[str, Path]:
    """``{dotted module name: file}`` for every ``.py`` file under ``root`` (a package ``__init__`` by its package's
    name)."""
    out = {}
    for path in sorted(root.rglob("*.py")):
        parts = [package, *path.relative_to(root).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    """Every import statement in ``tree``, at any depth, except in the body of an ``if TYPE_CHECKING:``."""
    found: list[ast.Import | ast.ImportFrom] = []
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)
            continue
        stack.extend(ast.iter_child_nodes(node))
    return found


def import_graph(root: Path = ROOT, package: str = PACKAGE) -> dict[str, set[str]]:
    """``{module: the package's modules it imports}`` for the package at ``root``."""
    modules = _modules(root, package)
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        targets: set[str] = set()
        for node in _imports(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    target = alias.name
                    while target and target not in modules:  # the longest prefix that is a module
                        target = target.rpartition(".")[0]
                    if target:
                        targets.add(target)
                continue
            base = node.module or ""
            if node.level:  # relative: level 1 is this module's package (the module itself for an __init__)
                here = name.split(".") if is_package else name.split(".")[:-1]
                here = here[:len(here) - node.level + 1]
                base = ".".join(here + ([base] if base else []))
            if base != package and not base.startswith(package + "."):
                continue
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                targets.add(sub if sub in modules else base)
        graph[name] = {t for t in targets if t in modules and t != name}
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle (``[a, b, ..., a]``) through each strongly connected component of more than one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[list[str]] = []

    def connect(v: str) -> None:  # Tarjan; the package has a few dozen modules, recursion is fine
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                components.append(component)

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return [_cycle_through(graph, set(c), min(c)) for c in components]


def _cycle_through(graph: dict[str, set[str]], component: set[str], start: str) -> list[str]:
    """The shortest path from ``start`` back to itself inside ``component`` (breadth first)."""
    parent: dict[str, str] = {}
    frontier = [start]
    while frontier:
        nxt = []
        for v in frontier:
            for w in sorted(graph[v] & component):
                if w == start:
                    path = [v]
                    while path[-1] != start:
                        path.append(parent[path[-1]])
                    return [*reversed(path), start]
                if w not in parent:
                    parent[w] = v
                    nxt.append(w)
        frontier = nxt
    raise AssertionError(f"{start} is in a strongly connected component but on no cycle")


def test_the_package_has_no_import_cycle():
    graph = import_graph()
    for source, target in ALLOWED_EDGES:
        graph[source].discard(target)
    cycles = find_cycles(graph)
    assert not cycles, "import cycles in wsr_bench:\n" + "\n".join("  " + " -> ".join(c) for c in cycles)


def test_allowed_edges_still_exist():
    graph = import_graph()
    stale = [f"{s} -> {t}" for s, t in ALLOWED_EDGES if t not in graph.get(s, ())]
    assert not stale, f"no longer imported, delete from ALLOWED_EDGES: {stale}"


def test_the_graph_sees_the_imports_it_should():
    """The check is only as good as the edges it finds: a few known ones, of each kind."""
    graph = import_graph()
    assert {"wsr_bench.evaluate.batches"} <= graph["wsr_bench.evaluate.sweeps"]  # from-import of a module's names
    assert "wsr_bench.evaluate.sweeps" in graph["wsr_bench.evaluate.spectrum"]
    assert "wsr_bench.data.errors" in graph["wsr_bench.data.fashion_mnist"]
    assert "wsr_bench.data.fashion_mnist" in graph["wsr_bench.data.datasets"]  # a function-level import
    assert "wsr_bench.evaluate.sanity" in graph["wsr_bench.evaluate.spectrum"]  # another one
    assert "wsr_bench.config" not in graph["wsr_bench.data.datasets"]  # only under TYPE_CHECKING
    assert "wsr_bench.evaluate.spectrum" in graph["wsr_bench.evaluate"]  # a package __init__'s re-export


def test_a_cycle_is_found_and_printed(tmp_path):
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    files = {
        "__init__.py": "from pkg.a import A\n",
        "a.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg import c\nA = 1\n",
        "b.py": "def f():\n    from pkg.sub import d\n",
        "c.py": "import pkg.b\n",
        "sub/__init__.py": "from .d import D\n",
        "sub/d.py": "from .. import c\nD = 1\n",
    }
    for name, text in files.items():
        (pkg / name).write_text(text)
    graph = import_graph(pkg, "pkg")
    assert graph == {"pkg": {"pkg.a"}, "pkg.a": set(), "pkg.b": {"pkg.sub.d"}, "pkg.c": {"pkg.b"},
                     "pkg.sub": {"pkg.sub.d"}, "pkg.sub.d": {"pkg.c"}}
    assert find_cycles(graph) == [["pkg.b", "pkg.sub.d", "pkg.c", "pkg.b"]]
    (pkg / "sub" / "d.py").write_text("D = 1\n")
    assert find_cycles(import_graph(pkg, "pkg")) == []
    (pkg / "sub" / "d.py").write_text("from pkg.sub import D as E\nD = 1\n")  # a name from its own __init__
    assert find_cycles(import_graph(pkg, "pkg")) == [["pkg.sub", "pkg.sub.d", "pkg.sub"]]


def test_every_part_has_a_place_in_the_layers():
    parts = {part_of(m) for m in import_graph()}
    missing = sorted(parts - set(MAY_IMPORT))
    assert not missing, f"parts of wsr_bench that docs/architecture.md does not place in a layer: {missing}"


def test_each_part_imports_only_the_layers_it_may():
    bad = [f"{source} -> {target}" for source, targets in sorted(import_graph().items()) for target in sorted(targets)
           if part_of(source) != part_of(target) and part_of(target) not in MAY_IMPORT.get(part_of(source), set())]
    assert not bad, "imports across layers that docs/architecture.md does not allow:\n  " + "\n  ".join(bad)


def test_the_layers_are_the_ones_the_architecture_page_lists():
    page = (ROOT.parent / "docs" / "architecture.md").read_text()
    for part in MAY_IMPORT:
        if part != "wsr_bench":
            assert f"`{part}`" in page, f"docs/architecture.md does not name the part {part!r}"


def test_no_two_modules_share_a_name():
    """A module's file name says its job: two ``pipeline.py`` doing different jobs is the confusion this refuses."""
    names: dict[str, list[str]] = {}
    for module in import_graph():
        if (ROOT.parent / Path(*module.split(".")).with_suffix(".py")).is_file():  # not a package __init__
            names.setdefault(module.rsplit(".", 1)[-1], []).append(module)
    shared = {name: found for name, found in names.items() if len(found) > 1}
    assert not shared, f"modules sharing a name: {shared}"
