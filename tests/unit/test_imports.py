"""The repo's packages import each other without cycles (module level and function level alike)."""

from __future__ import annotations

import graphlib

from tests.support.imports import import_graph


def test_the_graph_sees_imports() -> None:
    graph = import_graph()
    assert "client.app" in graph["client.__main__"]
    assert "shared.contracts" in graph["shared.ledger"]


def test_no_import_cycles() -> None:
    try:
        graphlib.TopologicalSorter(import_graph()).prepare()
    except graphlib.CycleError as cycle:
        raise AssertionError(f"import cycle: {' -> '.join(cycle.args[1])}") from None
