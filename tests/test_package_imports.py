"""The package's own imports, read from the source: no cycles, and every import goes down the
declared layers (a subpackage's docstring says which it may import)."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "amips_bench"

#: each part of the package and its layer: a module imports its own part or a lower layer
LAYERS = {"core": 0, "datasets": 1, "models": 2, "experiments": 3, "reporting": 4, "comparing": 5,
          "cli": 6, "planning": 6}
#: modules allowed function-local imports of the package: the CLI keeps `amips-bench --help`
#: fast by importing a stage's modules only when that stage runs
LAZY = {"cli"}


def _module(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> list[tuple[str, bool]]:
    """(imported module, whether the import is inside a function) of every package import."""
    tree = ast.parse(path.read_text())
    module = _module(path)
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    local = {id(n) for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
             for n in ast.walk(f)}
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package[:len(package) - (node.level - 1)] if node.level > 1 else package
            target = ".".join(base + ([node.module] if node.module else []))
            names = [target] if node.module else [f"{target}.{a.name}".strip(".") for a in node.names]
            out += [(name, id(node) in local) for name in names]
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            out += [(n.removeprefix("amips_bench."), id(node) in local)
                    for n in names if n.startswith("amips_bench.")]
    return out


def _graph() -> dict[str, list[tuple[str, bool]]]:
    return {_module(p): _imports(p) for p in sorted(PACKAGE.rglob("*.py"))}


def _known(graph: dict, name: str) -> str:
    """The module an import names (`from .plots import style` names reporting.plots.style)."""
    while name and name not in graph:
        name = name.rpartition(".")[0]
    return name


def test_every_module_belongs_to_a_declared_part():
    parts = {m.split(".")[0] for m in _graph() if m}
    assert parts <= set(LAYERS), parts - set(LAYERS)


def test_imports_go_down_the_layers():
    wrong = []
    graph = _graph()
    for module, imports in graph.items():
        if not module:
            continue
        here = module.split(".")[0]
        for name, _ in imports:
            there = _known(graph, name).split(".")[0]
            if there != here and LAYERS[there] > LAYERS[here]:
                wrong.append(f"{module} imports {name}")
    assert not wrong, "\n".join(wrong)


def test_the_package_has_no_import_cycle():
    graph = _graph()
    edges = {m: {_known(graph, n) for n, _ in imps} - {m, ""} for m, imps in graph.items()}
    # a package's __init__ is not a step of a cycle through its own modules
    state: dict[str, int] = {}
    cycle: list[str] = []

    def visit(node: str, path: list[str]) -> bool:
        state[node] = 1
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                cycle.extend(path[path.index(nxt):] + [node, nxt] if nxt in path else [node, nxt])
                return True
            if nxt not in state and visit(nxt, path + [node]):
                return True
        state[node] = 2
        return False

    for start in sorted(edges):
        if start not in state and visit(start, []):
            break
    assert not cycle, " -> ".join(cycle)


def test_function_local_imports_only_where_they_keep_the_cli_fast():
    local = sorted(f"{m} imports {n}" for m, imps in _graph().items() for n, inside in imps
                   if inside and m not in LAZY)
    assert not local, "\n".join(local)


def test_a_cycle_and_an_upward_import_are_found(tmp_path, monkeypatch):
    """The checks above can fail: a planted upward import and a planted cycle are caught."""
    pkg = tmp_path / "amips_bench"
    for name, text in {"core/__init__.py": "", "core/a.py": "from ..models.b import run\n",
                       "models/__init__.py": "", "models/b.py": "from ..core.a import walk\n"}.items():
        (pkg / name).parent.mkdir(parents=True, exist_ok=True)
        (pkg / name).write_text(text)
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", pkg)
    try:
        test_imports_go_down_the_layers()
    except AssertionError as exc:
        assert "core.a imports models.b" in str(exc)
    else:
        raise AssertionError("an upward import was not found")
    try:
        test_the_package_has_no_import_cycle()
    except AssertionError as exc:
        assert "core.a" in str(exc) and "models.b" in str(exc)
    else:
        raise AssertionError("a cycle was not found")
