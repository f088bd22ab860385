"""No function of the package takes more than 8 named parameters (issue 34, item 4).

Settings that travel together are one object (``SpectrumOptions`` and ``EvalRuntime`` beside it, ``AttackSettings``,
``LoopOptions`` and ``EpochRuntime``, ...); a long signature is where such an object is missing. ``self``/``cls`` are
not counted, nor ``*args``/``**kwargs``. The command line's glue (``cli.py``, which maps flags to those objects) and
the ``autoattack`` bridge (``_compat.py``, which mirrors AutoAttack's own signature) are exempt.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "wsr_bench"
MAX_NAMED = 8
EXEMPT = {"cli.py", "_compat.py"}


def named_parameters(node: ast.FunctionDef | ast.AsyncFunctionDef) -> list[str]:
    a = node.args
    return [p.arg for p in (*a.posonlyargs, *a.args, *a.kwonlyargs) if p.arg not in ("self", "cls")]


def long_signatures(root: Path = PACKAGE) -> list[str]:
    found = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root).as_posix()
        if rel in EXEMPT:
            continue
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                names = named_parameters(node)
                if len(names) > MAX_NAMED:
                    found.append(f"wsr_bench/{rel}:{node.lineno} {node.name}() takes {len(names)} named parameters")
    return found


def test_no_function_takes_more_than_8_named_parameters():
    assert long_signatures() == [], "group the settings that travel together into one object:\n" + "\n".join(
        long_signatures())


def test_the_check_counts_what_it_should(tmp_path):
    (tmp_path / "m.py").write_text(
        "def ok(a, b, c, d, e, f, g, h, *args, **kwargs): pass\n"
        "class C:\n"
        "    def ok(self, a, b, c, d, e, f, g, h): pass\n"
        "    def bad(self, a, b, c, d, e, f, g, *, h, i): pass\n"
        "def also_bad(a, /, b, c, d, e, f, g, h, i=1): pass\n")
    (tmp_path / "cli.py").write_text("def glue(a, b, c, d, e, f, g, h, i, j): pass\n")
    found = long_signatures(tmp_path)
    assert sorted(f.split()[1] for f in found) == ["also_bad()", "bad()"]
