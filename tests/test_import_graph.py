"""The modules of ``wsr_bench`` import each other without a cycle.

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
    assert "wsr_bench.errors" in graph["wsr_bench.fashion_mnist"]
    assert "wsr_bench.fashion_mnist" in graph["wsr_bench.data"]  # a function-level import
    assert "wsr_bench.evaluate.sanity" in graph["wsr_bench.evaluate.spectrum"]  # another one
    assert "wsr_bench.config" not in graph["wsr_bench.data"]  # only under TYPE_CHECKING
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
