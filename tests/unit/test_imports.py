"""The repo's packages import each other without cycles (module level and function level alike)."""

from __future__ import annotations

import ast
import graphlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("shared", "scoring", "client", "devstack", "benchmarks", "tests")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def repo_modules() -> dict[str, Path]:
    modules = {"function_app": ROOT / "function_app.py"}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            modules[module_name(path)] = path
    return modules


def imported(node: ast.AST, module: str, is_package: bool, known: dict[str, Path]) -> set[str]:
    """Repo modules one import statement pulls in (``from a import b`` counts ``a.b`` if it is a module)."""
    if isinstance(node, ast.Import):
        return {alias.name for alias in node.names if alias.name in known}
    if not isinstance(node, ast.ImportFrom):
        return set()
    if node.level:
        base = module.split(".") if is_package else module.split(".")[:-1]
        base = base[: len(base) - (node.level - 1)]
        source = ".".join(base + ([node.module] if node.module else []))
    else:
        source = node.module or ""
    found = {f"{source}.{alias.name}" for alias in node.names if f"{source}.{alias.name}" in known}
    if source in known and len(found) < len(node.names):
        found.add(source)
    return found


def import_graph() -> dict[str, set[str]]:
    known = repo_modules()
    graph: dict[str, set[str]] = {}
    for module, path in known.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        targets: set[str] = set()
        for node in ast.walk(tree):
            targets |= imported(node, module, path.name == "__init__.py", known)
        graph[module] = targets - {module}
    return graph


def test_the_graph_sees_imports() -> None:
    graph = import_graph()
    assert "client.app" in graph["client.__main__"]
    assert "shared.contracts" in graph["shared.ledger"]


def test_no_import_cycles() -> None:
    try:
        graphlib.TopologicalSorter(import_graph()).prepare()
    except graphlib.CycleError as cycle:
        raise AssertionError(f"import cycle: {' -> '.join(cycle.args[1])}") from None
