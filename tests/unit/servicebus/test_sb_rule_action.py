"""SQL rule actions: SET and REMOVE of user properties, statement order, errors."""

from __future__ import annotations

import pytest

from devstack.servicebus.filters import SqlAction
from tests.unit.servicebus.syntax import assert_syntax_error


def test_set_adds_and_updates_properties() -> None:
    assert SqlAction("SET b = 2").apply({}, {"a": 1}) == {"a": 1, "b": 2}
    assert SqlAction("SET a = 'x'").apply({}, {"a": 1}) == {"a": "x"}


def test_set_updates_an_existing_property_matched_case_insensitively() -> None:
    assert SqlAction("SET model = 'v2'").apply({}, {"Model": "v1"}) == {"Model": "v2"}


def test_remove_deletes_and_ignores_missing_properties() -> None:
    assert SqlAction("REMOVE a").apply({}, {"a": 1, "b": 2}) == {"b": 2}
    assert SqlAction("REMOVE [A]").apply({}, {"a": 1}) == {}
    assert SqlAction("REMOVE missing").apply({}, {"a": 1}) == {"a": 1}


def test_statements_run_in_order_and_see_earlier_results() -> None:
    action = SqlAction("SET a = 1; SET b = a + 1; REMOVE a")
    assert action.apply({}, {}) == {"b": 2}
    assert SqlAction("set x = 1 SET y = x * 10;").apply({}, {}) == {"x": 1, "y": 10}


def test_values_can_come_from_system_properties_and_expressions() -> None:
    system = {"Label": "orders", "DeliveryCount": 2}
    action = SqlAction("SET source = sys.Label + '-routed'; SET attempts = sys.DeliveryCount * 2")
    assert action.apply(system, {}) == {"source": "orders-routed", "attempts": 4}


def test_setting_an_unknown_value_stores_null() -> None:
    assert SqlAction("SET b = missing + 1").apply({}, {}) == {"b": None}


def test_apply_leaves_its_inputs_unchanged() -> None:
    user = {"a": 1}
    result = SqlAction("SET a = 2; SET c = 3").apply({}, user)
    assert user == {"a": 1}
    assert result == {"a": 2, "c": 3}


def test_equality() -> None:
    assert SqlAction("SET a = 1") == SqlAction("SET a = 1")
    assert SqlAction("SET a = 1") != SqlAction("SET a = 2")


@pytest.mark.parametrize(
    ("expression", "position", "fragment"),
    [
        ("", 0, "empty"),
        ("UPDATE a = 1", 0, "expected SET or REMOVE"),
        ("SET a 1", 6, "'=' after the property name"),
        ("SET = 1", 4, "a property name after SET"),
        ("SET sys.Label = 'x'", 4, "user properties only, not sys.Label"),
        ("REMOVE sys.To", 7, "user properties only"),
        ("SET a = 1 garbage", 10, "expected ';', SET, REMOVE or the end"),
        ("SET a = (b = 1)", 9, "a condition cannot be used as a value"),
        ("SET a = 'x", 8, "unterminated string"),
        ("SET sys.Lable = 1", 8, "unknown system property"),
    ],
)
def test_action_syntax_errors_name_the_position(expression: str, position: int, fragment: str) -> None:
    assert_syntax_error(SqlAction, expression, position, fragment)
