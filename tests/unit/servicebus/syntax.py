"""The check every SQL filter and rule action syntax error must pass: it names the expression and the column."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from devstack.servicebus.filters import FilterSyntaxError


def assert_syntax_error(compile_: Callable[[str], object], expression: str, position: int, fragment: str) -> None:
    """Compiling ``expression`` fails with a FilterSyntaxError (a ValueError) at ``position`` (0-based) whose
    message starts with the 1-based column and contains ``fragment``."""
    with pytest.raises(FilterSyntaxError) as caught:
        compile_(expression)
    error = caught.value
    assert isinstance(error, ValueError)
    assert (error.position, error.expression) == (position, expression)
    assert str(error).startswith(f"column {position + 1}: ")
    assert fragment in str(error)
