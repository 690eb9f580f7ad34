"""The layers of docs/architecture.md, enforced.

Two checks: import-linter's contracts in ``pyproject.toml`` (each layer imports
only the layers below it), and a graph of every import between daskscore's
modules, function-level and ``if TYPE_CHECKING:`` imports included, that must
have no cycle (import-linter leaves the ``TYPE_CHECKING`` ones out: they never
run). And a size check: no
function over 60 lines and no class over 300.
"""

from __future__ import annotations

import ast
import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "daskscore"


def _modules() -> dict[str, tuple[pathlib.Path, bool]]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts = parts[:-1]
        out[".".join(parts)] = (path, is_package)
    return out


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                skipped.update(id(n) for n in ast.walk(child))
    return skipped


def _imported(module: str, is_package: bool, node: ast.AST, known) -> list[str]:
    """The daskscore modules an import statement loads."""
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    else:
        if node.level:
            base = module.split(".") if is_package else module.split(".")[:-1]
            base = base[: len(base) - (node.level - 1)]
            name = ".".join(base + ([node.module] if node.module else []))
        else:
            name = node.module or ""
        names = [f"{name}.{a.name}" if f"{name}.{a.name}" in known else name
                 for a in node.names]
    out = []
    for name in names:
        if not name.startswith("daskscore"):
            continue
        while name not in known and "." in name:
            name = name.rsplit(".", 1)[0]
        out.append(name)
    return out


def import_graph(type_checking: bool = True) -> dict[str, dict[str, int]]:
    """``{module: {imported module: line}}``, function-level imports included."""
    known = _modules()
    graph: dict[str, dict[str, int]] = {}
    for module, (path, is_package) in known.items():
        tree = ast.parse(path.read_text(), str(path))
        skipped = set() if type_checking else _type_checking_nodes(tree)
        for node in ast.walk(tree):
            if id(node) in skipped or not isinstance(node, ast.Import | ast.ImportFrom):
                continue
            for target in _imported(module, is_package, node, known):
                # the package root only re-exports; a module's own parents are
                # imported by Python before it, not by it
                if target != module and target != "daskscore":
                    graph.setdefault(module, {}).setdefault(target, node.lineno)
    return graph


def find_cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, {}):
            if w not in index:
                visit(w)
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
                cycles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return cycles


def test_no_import_cycle_between_modules():
    cycles = find_cycles(import_graph())
    shown = "; ".join(" <-> ".join(c) for c in cycles)
    assert cycles == [], f"import cycles (function-level imports included): {shown}"


def test_the_cycle_check_finds_a_cycle():
    graph = {"a": {"b": 1}, "b": {"c": 2}, "c": {"a": 3}, "d": {"a": 1}}
    assert find_cycles(graph) == [["a", "b", "c"]]


def test_function_level_imports_of_daskscore_are_none():
    """A function-level import is for a heavy optional dependency, never for ours."""
    found = []
    for module, (path, _) in _modules().items():
        tree = ast.parse(path.read_text(), str(path))
        top = {id(n) for n in tree.body}
        skipped = _type_checking_nodes(tree)
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.ImportFrom)
                and id(node) not in top
                and id(node) not in skipped
                and (node.level or (node.module or "").startswith("daskscore"))
            ):
                found.append(f"{module}:{node.lineno}")
    assert found == []


def test_import_contracts_hold():
    """import-linter: each layer imports only the layers below it."""
    exe = pathlib.Path(sys.executable).with_name("lint-imports")
    proc = subprocess.run(
        [str(exe), str(ROOT / "pyproject.toml"), "--no-cache"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert " 0 broken" in proc.stdout


@pytest.mark.parametrize(
    "heavy", ["daskscore.registry", "daskscore.pipeline", "daskscore.engine",
              "daskscore.step", "daskscore._settings", "distributed", "pandas",
              "dask"]
)
def test_the_runner_process_does_not_load(heavy):
    """Importing what the runner needs loads no client-side or registry module."""
    code = (
        "import sys, daskscore.runner.process, daskscore.entry_script; "
        f"print(any(m == {heavy!r} or m.startswith({heavy!r} + '.') "
        "for m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


MAX_FUNCTION_LINES = 60
MAX_CLASS_LINES = 300


def oversized(tree: ast.AST, where: str) -> list[str]:
    """``where:line kind name lines`` for each function or class over its limit.

    Nested functions and methods count on their own too; a definition's lines run
    from its ``def``/``class`` line (decorators left out) to its last line.
    """
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef):
            kind, limit = "class", MAX_CLASS_LINES
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            kind, limit = "function", MAX_FUNCTION_LINES
        else:
            continue
        lines = node.end_lineno - node.lineno + 1
        if lines > limit:
            found.append(f"{where}:{node.lineno} {kind} {node.name} {lines}")
    return found


def test_no_function_over_60_lines_and_no_class_over_300():
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        found.extend(oversized(tree, str(path.relative_to(ROOT))))
    assert found == [], (
        f"over {MAX_FUNCTION_LINES} lines (functions) or {MAX_CLASS_LINES} lines "
        "(classes); split them into private helpers:\n" + "\n".join(found)
    )


def test_the_size_check_finds_long_definitions():
    def body(n: int) -> str:
        return "".join(f"    x{i} = {i}\n" for i in range(n))

    source = (
        "def at_the_limit():\n" + body(59)  # lines 1-60: 60 lines, allowed
        + "def too_long():\n" + body(60)  # lines 61-121
        + "class Big:\n" + body(300)  # from line 122
    )
    assert oversized(ast.parse(source), "m.py") == [
        "m.py:61 function too_long 61",
        "m.py:122 class Big 301",
    ]
