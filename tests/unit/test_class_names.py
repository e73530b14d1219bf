"""Every class name in the repo is defined once, so a name says which thing it is wherever it is read.

Module-level classes (and classes nested in them) of every package count, tests included: a fake or a
support class is imported by name like any other. Classes defined inside a function (an HTTP handler for one
test server, a log handler for one test) are local to that function and are left out.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

from tests.support.imports import repo_modules


def classes(tree: ast.AST) -> Iterator[ast.ClassDef]:
    """Classes at module level and inside them, not inside functions."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.ClassDef):
            yield node
            yield from classes(node)
        elif not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            yield from classes(node)  # if / try blocks at module level


def definitions(modules: dict[str, Path]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = defaultdict(list)
    for module, path in modules.items():
        for node in classes(ast.parse(path.read_text(), filename=str(path))):
            found[node.name].append(f"{module}:{node.lineno}")
    return found


def test_no_two_modules_define_a_class_of_the_same_name() -> None:
    duplicates = {name: where for name, where in definitions(repo_modules()).items() if len(where) > 1}
    assert duplicates == {}, f"class names defined more than once (rename by what each is): {duplicates}"


def test_the_check_sees_a_duplicate(tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text("class Clock:\n    class Inner: ...\n")
    (tmp_path / "b.py").write_text("if True:\n    class Clock: ...\ndef f():\n    class Inner: ...\n")
    found = definitions({"a": tmp_path / "a.py", "b": tmp_path / "b.py"})
    assert found == {"Clock": ["a:1", "b:2"], "Inner": ["a:2"]}
