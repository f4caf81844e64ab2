"""The rules of the house, checked on the source: sizes, private imports, import cycles.

These read ``src/journey_ml`` as text (``ast``), so they run in milliseconds and fail on
the first module, function or import that breaks a rule, naming it.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "journey_ml"
MAX_MODULE_LINES = 700
MAX_FUNCTION_LINES = 120


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES: dict[str, Path] = {_module_name(p): p for p in sorted(SRC.rglob("*.py"))}
TREES: dict[str, ast.Module] = {name: ast.parse(p.read_text(), str(p)) for name, p in MODULES.items()}


def _imports(name: str, tree: ast.Module) -> Iterator[tuple[str, list[str]]]:
    """(imported module, imported names) for every import in the module, lazy ones included."""
    is_package = MODULES[name].name == "__init__.py"
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, []
        elif isinstance(node, ast.ImportFrom):
            target = node.module or ""
            if node.level:
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([target] if target else []))
            yield target, [alias.name for alias in node.names]


def _edges() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {name: set() for name in MODULES}
    for name, tree in TREES.items():
        for target, names in _imports(name, tree):
            if target in MODULES:
                graph[name].add(target)
            for imported in names:  # `from pkg import module` imports the module
                if f"{target}.{imported}" in MODULES:
                    graph[name].add(f"{target}.{imported}")
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
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
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def _package_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    def package(module: str) -> str:
        return ".".join(module.split(".")[:2])

    out: dict[str, set[str]] = {package(m): set() for m in graph}
    for m, targets in graph.items():
        for t in targets:
            if package(t) != package(m):
                out[package(m)].add(package(t))
    return out


#: The data flow, as in the README's "Map of the code": a package imports only from the
#: packages before it (and the shared leaves ``exceptions`` and ``runtime``).
FLOW = (
    "contract", "ingest", "eventlog", "features", "labels", "models", "evaluation",
    "explain", "registry", "report", "pipeline", "serving", "cli",
)  # fmt: skip
LEAVES = ("journey_ml", "exceptions", "runtime")


@pytest.mark.parametrize("name", sorted(MODULES))
def test_module_size(name: str) -> None:
    lines = MODULES[name].read_text().count("\n")
    assert lines <= MAX_MODULE_LINES, f"{name} has {lines} lines (limit {MAX_MODULE_LINES})"


def test_function_size() -> None:
    long = [
        f"{name}.{node.name}: {node.end_lineno - node.lineno + 1} lines"
        for name, tree in TREES.items()
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.end_lineno is not None
        and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES
    ]
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines: {long}"


def test_no_private_imports_across_modules() -> None:
    private = [
        f"{name} imports {imported} from {target}"
        for name, tree in TREES.items()
        for target, names in _imports(name, tree)
        if target.startswith("journey_ml") and target != name
        for imported in names
        if imported.startswith("_") and not imported.startswith("__")
    ]
    assert not private, private


def test_no_import_cycles_lazy_ones_included() -> None:
    assert _cycles(_edges()) == []


def test_no_cycles_between_packages() -> None:
    assert _cycles(_package_graph(_edges())) == []


def test_packages_import_only_earlier_stages_of_the_flow() -> None:
    order = {f"journey_ml.{p}": i for i, p in enumerate(FLOW)}
    order["journey_ml.simulate"] = order["journey_ml.ingest"]  # standalone: contract only
    backwards = [
        f"{package} imports {target}"
        for package, targets in _package_graph(_edges()).items()
        if package in order
        for target in targets
        if target.removeprefix("journey_ml.") not in LEAVES and target != "journey_ml"
        and order.get(target, len(FLOW)) >= order[package]
    ]  # fmt: skip
    assert not backwards, backwards
    assert set(order) >= {".".join(m.split(".")[:2]) for m in MODULES} - {"journey_ml", *(f"journey_ml.{leaf}" for leaf in LEAVES)}


def test_the_checker_sees_a_cycle_and_a_private_import() -> None:
    """The rules above can fail: a made-up pair of modules breaks both."""
    graph = {"a": {"b"}, "b": {"a"}, "c": set()}
    assert _cycles(graph) == [["a", "b"]]
    tree = ast.parse("from journey_ml.features import _encode\n")
    MODULES["journey_ml.fake"] = SRC / "fake.py"
    try:
        assert list(_imports("journey_ml.fake", tree)) == [("journey_ml.features", ["_encode"])]
    finally:
        del MODULES["journey_ml.fake"]
