"""What the repo's modules import, read from their source (no module is imported): the graph of repo-internal
imports, and the third-party modules a set of repo modules pulls in."""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterable, Iterator
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


def _sources(node: ast.AST, module: str, is_package: bool) -> Iterator[tuple[str, list[str]]]:
    """(module named, names taken from it) for one import statement; relative imports made absolute."""
    if isinstance(node, ast.Import):
        for alias in node.names:
            yield alias.name, []
    elif isinstance(node, ast.ImportFrom):
        if node.level:
            base = module.split(".") if is_package else module.split(".")[:-1]
            base = base[: len(base) - (node.level - 1)]
            yield ".".join(base + ([node.module] if node.module else [])), [alias.name for alias in node.names]
        else:
            yield node.module or "", [alias.name for alias in node.names]


def imported(node: ast.AST, module: str, is_package: bool, known: dict[str, Path]) -> set[str]:
    """Repo modules one import statement pulls in (``from a import b`` counts ``a.b`` if it is a module)."""
    found: set[str] = set()
    for source, names in _sources(node, module, is_package):
        if not names:
            found |= {source} & known.keys()
            continue
        submodules = {f"{source}.{name}" for name in names if f"{source}.{name}" in known}
        found |= submodules
        if source in known and len(submodules) < len(names):
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


def reachable(graph: dict[str, set[str]], roots: Iterable[str]) -> set[str]:
    """The repo modules ``roots`` import, directly or through each other (module and function level)."""
    seen: set[str] = set()
    todo = list(roots)
    while todo:
        module = todo.pop()
        if module not in seen:
            seen.add(module)
            todo.extend(graph.get(module, ()))
    return seen


def third_party_imports(modules: Iterable[str]) -> set[str]:
    """Dotted names (``pkg.sub`` or ``pkg.sub.attribute``) of non-repo, non-stdlib imports in ``modules``."""
    known = repo_modules()
    first_party = {name.split(".")[0] for name in known}
    names: set[str] = set()
    for module in modules:
        path = known[module]
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            for source, taken in _sources(node, module, path.name == "__init__.py"):
                top = source.split(".")[0]
                if top in first_party or top in sys.stdlib_module_names or top == "__future__":
                    continue
                names |= {f"{source}.{name}" for name in taken} if taken else {source}
    return names
