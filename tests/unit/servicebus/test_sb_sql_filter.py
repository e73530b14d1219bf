"""SQL filter language: operators, three-valued logic, identifiers, system vs user properties, syntax errors."""

from __future__ import annotations

from typing import Any

import pytest

from devstack.servicebus.filters import SqlFilter
from tests.unit.servicebus.syntax import assert_syntax_error


def evaluate(expression: str, user: dict[str, Any] | None = None, system: dict[str, Any] | None = None) -> Any:
    return SqlFilter(expression).evaluate(system or {}, user or {})


@pytest.mark.parametrize(
    ("expression", "user", "expected"),
    [
        ("a = 5", {"a": 5}, True),
        ("a = 5", {"a": 6}, False),
        ("a <> 5", {"a": 6}, True),
        ("a <> 5", {"a": 5}, False),
        ("a != 5", {"a": 6}, True),
        ("a != 5", {"a": 5}, False),
        ("a < 5", {"a": 4}, True),
        ("a < 5", {"a": 5}, False),
        ("a <= 5", {"a": 5}, True),
        ("a <= 5", {"a": 6}, False),
        ("a > 5", {"a": 6}, True),
        ("a > 5", {"a": 5}, False),
        ("a >= 5", {"a": 5}, True),
        ("a >= 5", {"a": 4}, False),
        ("a = 2.5", {"a": 2.5}, True),
        ("a = 5", {"a": 5.0}, True),
        ("a < 5.5", {"a": 5}, True),
        ("a = 'x'", {"a": "x"}, True),
        ("a = 'x'", {"a": "X"}, False),
        ("a < 'b'", {"a": "a"}, True),
        ("a = TRUE", {"a": True}, True),
        ("a = FALSE", {"a": True}, False),
        ("a = b", {"a": 3, "b": 3}, True),
        ("a > b", {"a": 3, "b": 4}, False),
        ("5 = a", {"a": 5}, True),
    ],
)
def test_comparison_operators(expression: str, user: dict[str, Any], expected: bool) -> None:
    assert evaluate(expression, user) is expected


@pytest.mark.parametrize(
    ("expression", "user", "expected"),
    [
        ("a = 1", {"a": "1"}, False),
        ("a <> 1", {"a": "1"}, True),
        ("a < 1", {"a": "1"}, None),
        ("a = 1", {"a": True}, False),
        ("a = TRUE", {"a": 1}, False),
        ("a != TRUE", {"a": 1}, True),
        ("a >= 'x'", {"a": 3}, None),
        ("a = b", {"a": 1, "b": "1"}, False),
        ("a <> b", {"a": 1, "b": "1"}, True),
        ("a = b", {"a": 1, "b": True}, False),
        ("a > b", {"a": 1, "b": "1"}, None),
    ],
)
def test_values_of_different_kinds_are_never_equal(expression: str, user: dict[str, Any], expected: Any) -> None:
    assert evaluate(expression, user) is expected


@pytest.mark.parametrize(
    "expression",
    ["a = 1", "a <> 1", "a < 1", "a + 1 = 2", "-a = 1", "a LIKE 'x%'", "a IN (1, 2)", "a NOT IN (1, 2)", "a = NULL"],
)
def test_missing_property_is_unknown_and_does_not_match(expression: str) -> None:
    assert evaluate(expression, {"other": 1}) is None
    assert evaluate(f"NOT ({expression})", {"other": 1}) is None
    assert SqlFilter(expression).matches({}, {}) is False
    assert SqlFilter(f"NOT ({expression})").matches({}, {}) is False


def test_null_valued_property_is_unknown() -> None:
    assert evaluate("a = 1", {"a": None}) is None


# T: t = 1 with t=1, F: f = 1 with f=0, U: u = 1 with u missing.
_TRUTH = {"T": "t = 1", "F": "f = 1", "U": "u = 1"}
_VALUE = {"T": True, "F": False, "U": None}
_AND = {"TT": "T", "TF": "F", "TU": "U", "FT": "F", "FF": "F", "FU": "F", "UT": "U", "UF": "F", "UU": "U"}
_OR = {"TT": "T", "TF": "T", "TU": "T", "FT": "T", "FF": "F", "FU": "U", "UT": "T", "UF": "U", "UU": "U"}


@pytest.mark.parametrize(("pair", "result"), sorted(_AND.items()))
def test_and_truth_table(pair: str, result: str) -> None:
    expression = f"{_TRUTH[pair[0]]} AND {_TRUTH[pair[1]]}"
    assert evaluate(expression, {"t": 1, "f": 0}) is _VALUE[result]


@pytest.mark.parametrize(("pair", "result"), sorted(_OR.items()))
def test_or_truth_table(pair: str, result: str) -> None:
    expression = f"{_TRUTH[pair[0]]} OR {_TRUTH[pair[1]]}"
    assert evaluate(expression, {"t": 1, "f": 0}) is _VALUE[result]


@pytest.mark.parametrize(("operand", "result"), [("T", False), ("F", True), ("U", None)])
def test_not_truth_table(operand: str, result: Any) -> None:
    assert evaluate(f"NOT {_TRUTH[operand]}", {"t": 1, "f": 0}) is result


def test_precedence_not_and_or() -> None:
    user = {"a": 1, "b": 2, "c": 3}
    assert evaluate("a = 1 OR b = 0 AND c = 0", user) is True  # AND binds tighter than OR
    assert evaluate("(a = 1 OR b = 0) AND c = 0", user) is False
    assert evaluate("NOT a = 1 OR b = 2", user) is True  # NOT binds tighter than OR
    assert evaluate("NOT (a = 1 OR b = 2)", user) is False


@pytest.mark.parametrize(
    ("expression", "user", "expected"),
    [
        ("a IS NULL", {}, True),
        ("a IS NULL", {"a": None}, True),
        ("a IS NULL", {"a": 0}, False),
        ("a IS NOT NULL", {}, False),
        ("a IS NOT NULL", {"a": ""}, True),
        ("EXISTS(a)", {"a": 1}, True),
        ("EXISTS(a)", {"a": None}, True),
        ("EXISTS(a)", {}, False),
        ("NOT EXISTS(a)", {}, True),
        ("NOT EXISTS (a)", {"a": 1}, False),
        ("exists([a b])", {"a b": 1}, True),
        ("EXISTS(user.a)", {"a": 1}, True),
        ("EXISTS(Model)", {"model": 1}, True),
    ],
)
def test_null_and_exists_are_never_unknown(expression: str, user: dict[str, Any], expected: bool) -> None:
    assert evaluate(expression, user) is expected


@pytest.mark.parametrize(
    ("expression", "user", "expected"),
    [
        ("a IN ('x', 'y')", {"a": "y"}, True),
        ("a IN ('x', 'y')", {"a": "z"}, False),
        ("a IN (1, 2)", {"a": 2.0}, True),
        ("a IN (1, 2)", {"a": "1"}, False),
        ("a IN (1, 2)", {"a": True}, False),
        ("a IN (TRUE)", {"a": True}, True),
        ("a IN ('x', NULL)", {"a": "x"}, True),
        ("a IN ('x', NULL)", {"a": "z"}, None),
        ("a NOT IN ('x', 'y')", {"a": "z"}, True),
        ("a NOT IN ('x', 'y')", {"a": "x"}, False),
        ("a IN ('x')", {}, None),
        ("a IN (b, 'q')", {"a": 3, "b": 3}, True),
        ("a IN (b, 'q')", {"a": 3}, None),
        ("a IN (b, 'q')", {"a": 3, "b": 4}, False),
        ("a IN (b + 1)", {"a": 4, "b": 3}, True),
        ("a IN (1)", {"a": [1]}, False),
    ],
)
def test_in(expression: str, user: dict[str, Any], expected: Any) -> None:
    assert evaluate(expression, user) is expected


@pytest.mark.parametrize(
    ("expression", "value", "expected"),
    [
        ("a LIKE 'abc'", "abc", True),
        ("a LIKE 'abc'", "abcd", False),
        ("a LIKE 'ab%'", "abcdef", True),
        ("a LIKE 'ab%'", "xabc", False),
        ("a LIKE '%ef'", "abcdef", True),
        ("a LIKE '%ef'", "abcdefg", False),
        ("a LIKE '%cd%'", "abcdef", True),
        ("a LIKE '%cd%'", "abef", False),
        ("a LIKE '%'", "", True),
        ("a LIKE 'a_c'", "abc", True),
        ("a LIKE 'a_c'", "abbc", False),
        ("a LIKE 'a%c%e'", "abcde", True),
        ("a LIKE 'a%c%e'", "abcdf", False),
        ("a LIKE 'a.c'", "abc", False),
        ("a LIKE 'a.c'", "a.c", True),
        ("a LIKE 'ABC'", "abc", False),
        ("a LIKE 'ab\\%' ESCAPE '\\'", "ab%", True),
        ("a LIKE 'ab\\%' ESCAPE '\\'", "abc", False),
        ("a LIKE 'a!_c' ESCAPE '!'", "a_c", True),
        ("a LIKE 'a!_c' ESCAPE '!'", "abc", False),
        ("a LIKE 'line%'", "line1\nline2", True),
        ("a NOT LIKE 'ab%'", "abc", False),
        ("a NOT LIKE 'ab%'", "xbc", True),
    ],
)
def test_like(expression: str, value: str, expected: bool) -> None:
    assert evaluate(expression, {"a": value}) is expected


@pytest.mark.parametrize(
    ("expression", "user", "expected"),
    [
        ("a LIKE p", {"a": "abc", "p": "a%"}, True),
        ("a LIKE p", {"a": "abc", "p": "b%"}, False),
        ("a LIKE p", {"a": "abc"}, None),
        ("a LIKE p ESCAPE e", {"a": "a%", "p": "a#%", "e": "#"}, True),
        ("a LIKE p ESCAPE e", {"a": "a%", "p": "a#%", "e": "##"}, None),
        ("a LIKE p ESCAPE '#'", {"a": "a", "p": "a#"}, None),
        ("a LIKE 'x%'", {"a": 5}, None),
        ("a LIKE 'x%'", {}, None),
        ("a NOT LIKE 'x%'", {}, None),
    ],
)
def test_like_with_computed_patterns_and_unknowns(expression: str, user: dict[str, Any], expected: Any) -> None:
    assert evaluate(expression, user) is expected


@pytest.mark.parametrize(
    ("expression", "user"),
    [
        ("a + 2 = 7", {"a": 5}),
        ("a - 2 = 3", {"a": 5}),
        ("a * 2 = 10", {"a": 5}),
        ("a / 2 = 2", {"a": 5}),  # integer division truncates
        ("a / 2 = -2", {"a": -5}),  # toward zero, as in C#
        ("a % 3 = 2", {"a": 5}),
        ("a % 3 = -2", {"a": -5}),  # the remainder takes the dividend's sign
        ("a / 2 = 2.5", {"a": 5.0}),
        ("a % 2 = 1.5", {"a": 5.5}),
        ("1 + 2 * 3 = 7", {}),
        ("(1 + 2) * 3 = 9", {}),
        ("10 - 4 - 3 = 3", {}),  # left-associative
        ("-a = -5", {"a": 5}),
        ("+a = 5", {"a": 5}),
        ("- -a = 5", {"a": 5}),
        ("a + 'def' = 'abcdef'", {"a": "abc"}),
        ("1.5E2 = 150", {}),
        ("0.5e-1 = 0.05", {}),
        (".5 = 0.5", {}),
        ("-9223372036854775808 < 0", {}),
    ],
)
def test_arithmetic(expression: str, user: dict[str, Any]) -> None:
    assert evaluate(expression, user) is True


@pytest.mark.parametrize("expression", ["a / 0 = 1", "a % 0 = 1", "a + 'x' = 1", "-a = 1", "a * b = 1", "a / 0.0 = 1"])
def test_arithmetic_that_has_no_value_is_unknown(expression: str) -> None:
    assert evaluate(expression, {"a": "s" if "-a" in expression else 5, "b": "x"}) is None


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("1=1", True),
        ("1 = 0", False),
        ("TRUE", True),
        ("FALSE", False),
        ("NOT FALSE", True),
        ("'it''s' = 'it''s'", True),
        ("'' = ''", True),
    ],
)
def test_constant_expressions(expression: str, expected: bool) -> None:
    assert SqlFilter(expression).matches({}, {"a": 1}) is expected


def test_keywords_are_case_insensitive() -> None:
    assert evaluate(
        "a = 1 aNd NoT b iS nUlL oR c lIkE 'x' and d in (1) AND exists(a) and TRUE", {"a": 1, "b": 2, "d": 1}
    )


@pytest.mark.parametrize(
    ("expression", "user"),
    [
        ("[my prop] = 1", {"my prop": 1}),
        ('"my prop" = 1', {"my prop": 1}),
        ("[HR-EmployeeID] = 'x'", {"HR-EmployeeID": "x"}),
        ("[a]]b] = 1", {"a]b": 1}),
        ('"a""b" = 1', {'a"b': 1}),
        ("[and] = 1", {"and": 1}),
        ("user.a = 1", {"a": 1}),
        ("USER.[a b] = 1", {"a b": 1}),
        ("user.like = 1", {"like": 1}),
        ("straße = 1", {"straße": 1}),
        ("a_1 = 1", {"a_1": 1}),
        ("Model = 'x'", {"model": "x"}),
    ],
)
def test_identifiers(expression: str, user: dict[str, Any]) -> None:
    assert evaluate(expression, user) is True


def test_exact_property_name_wins_over_case_insensitive_match() -> None:
    assert evaluate("model = 'exact'", {"Model": "other", "model": "exact"}) is True


def test_system_and_user_properties_are_separate() -> None:
    system = {"To": "sys-value", "Label": "lbl", "DeliveryCount": 3}
    user = {"To": "user-value"}
    assert evaluate("sys.To = 'sys-value'", user, system) is True
    assert evaluate("To = 'user-value'", user, system) is True
    assert evaluate("user.To = 'sys-value'", user, system) is False
    assert evaluate("sys.to = 'sys-value' AND SYS.label = 'lbl'", user, system) is True
    assert evaluate("sys.Subject = 'lbl'", user, system) is True
    assert evaluate("sys.DeliveryCount > 2", user, system) is True
    assert evaluate("sys.SessionId = 's'", user, system) is None  # a known system property that is not set
    assert evaluate("EXISTS(sys.SessionId)", user, system) is False
    assert evaluate("EXISTS(sys.Label)", user, system) is True


def test_property_function_and_newid() -> None:
    system = {"Label": "lbl"}
    assert evaluate("property('a') = 1", {"a": 1}) is True
    assert evaluate("P('sys.Label') = 'lbl'", {}, system) is True
    assert evaluate("p('user.a') = 1", {"a": 1}) is True
    assert evaluate("p(name) = 1", {"name": "a", "a": 1}) is True
    assert evaluate("p(5) = 1", {}) is None
    assert evaluate("newid() IS NOT NULL") is True
    assert evaluate("newid() = newid()") is False


def test_filters_read_mappings_without_changing_them() -> None:
    user = {"a": 1}
    system = {"Label": "x"}
    SqlFilter("a = 1 AND sys.Label = 'x' AND NOT EXISTS(b)").matches(system, user)
    assert user == {"a": 1}
    assert system == {"Label": "x"}


def test_equality_and_repr() -> None:
    assert SqlFilter("a = 1") == SqlFilter("a = 1")
    assert SqlFilter("a = 1") != SqlFilter("a = 2")
    assert hash(SqlFilter("a = 1")) == hash(SqlFilter("a = 1"))
    assert "a = 1" in repr(SqlFilter("a = 1"))


@pytest.mark.parametrize(
    ("expression", "position", "fragment"),
    [
        ("model = 'churn' ORR NOT EXISTS(model)", 16, "did you mean OR?"),
        ("EXIST(model)", 0, "did you mean EXISTS?"),
        ("sys.Lable = 'x'", 4, "unknown system property sys.Lable (did you mean Label?)"),
        ("model LIK 'a%'", 6, "did you mean LIKE?"),
        ("foo.bar = 1", 0, "unknown scope 'foo'"),
        ("a = 'abc", 4, "unterminated string"),
        ("[abc = 1", 0, "unterminated delimited identifier"),
        ('"abc = 1', 0, "unterminated quoted identifier"),
        ("a = 1 & b = 2", 6, "unexpected character '&'"),
        ("a = @p", 4, "unexpected character '@'"),
        ("", 0, "empty"),
        ("   ", 0, "empty"),
        ("(a = 1", 6, "expected ')'"),
        ("a = 1)", 5, "expected AND, OR or the end"),
        ("a = 1 = 2", 6, "do not chain"),
        ("a IN ()", 6, "expected a constant"),
        ("a IN (1, 2", 10, "',' or ')'"),
        ("a IN 1", 5, "'(' after IN"),
        ("a IS 5", 5, "NULL after IS"),
        ("a IS NOT 5", 9, "NULL after IS NOT"),
        ("EXISTS(1)", 7, "a property name"),
        ("EXISTS a", 7, "'(' after EXISTS"),
        ("model", 0, "expected a condition"),
        ("a = 1 AND b", 10, "expected a condition"),
        ("(a = 1) + 1 = 2", 1, "a condition cannot be used as a value"),
        ("a LIKE 5", 7, "pattern must be a string"),
        ("a LIKE 'x' ESCAPE 'ab'", 18, "one character"),
        ("a LIKE 'ab!' ESCAPE '!'", 7, "ends with its escape character"),
        ("a = 99999999999999999999", 4, "out of the 64-bit range"),
        ("a = 1 AND", 9, "expected a constant"),
        ("AND a = 1", 0, "expected a constant"),
        ("newid(1) = 1", 6, "newid() takes no argument"),
        ("sys. = 1", 5, "a property name after sys."),
    ],
)
def test_syntax_errors_name_the_position(expression: str, position: int, fragment: str) -> None:
    assert_syntax_error(SqlFilter, expression, position, fragment)


def test_amqp_typed_values_compare_as_their_base_kinds() -> None:
    from proton import symbol, timestamp, ulong

    assert evaluate("a = 'x' AND b = 5 AND c > 1000", {"a": symbol("x"), "b": ulong(5), "c": timestamp(2000)}) is True
    assert evaluate("a IN ('x') AND b IN (5)", {"a": symbol("x"), "b": ulong(5)}) is True
    assert evaluate("b = TRUE", {"b": ulong(1)}) is False
