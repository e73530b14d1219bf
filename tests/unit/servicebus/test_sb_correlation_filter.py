"""Correlation, true and false filters."""

from __future__ import annotations

from typing import Any

import pytest

from devstack.servicebus.filters import CorrelationFilter, FalseFilter, TrueFilter


@pytest.mark.parametrize(
    ("argument", "system_name"),
    [
        ("content_type", "ContentType"),
        ("correlation_id", "CorrelationId"),
        ("label", "Label"),
        ("message_id", "MessageId"),
        ("reply_to", "ReplyTo"),
        ("reply_to_session_id", "ReplyToSessionId"),
        ("session_id", "SessionId"),
        ("to", "To"),
    ],
)
def test_each_system_field_matches_its_system_property(argument: str, system_name: str) -> None:
    correlation = CorrelationFilter(**{argument: "v"})
    assert correlation.matches({system_name: "v"}, {})
    assert not correlation.matches({system_name: "w"}, {})
    assert not correlation.matches({}, {})
    assert not correlation.matches({}, {system_name: "v"})  # a user property of the same name does not count


def test_all_conditions_must_hold() -> None:
    correlation = CorrelationFilter(correlation_id="c1", label="orders", properties={"region": "eu", "tier": 2})
    system = {"CorrelationId": "c1", "Label": "orders"}
    assert correlation.matches(system, {"region": "eu", "tier": 2, "extra": True})
    assert not correlation.matches(system, {"region": "eu"})
    assert not correlation.matches(system, {"region": "us", "tier": 2})
    assert not correlation.matches({"CorrelationId": "c1"}, {"region": "eu", "tier": 2})


@pytest.mark.parametrize(
    ("wanted", "value", "expected"),
    [
        ("churn-v2", "churn-v2", True),
        ("churn-v2", "churn", False),
        ("churn-v2", "CHURN-V2", False),
        (1, 1, True),
        (1, 1.0, True),
        (1, "1", False),
        (1, True, False),
        (True, True, True),
        (True, 1, False),
        ("x", None, False),
    ],
)
def test_user_property_values_compare_by_kind(wanted: Any, value: Any, expected: bool) -> None:
    assert CorrelationFilter(properties={"p": wanted}).matches({}, {"p": value}) is expected


def test_user_property_names_are_exact() -> None:
    assert not CorrelationFilter(properties={"model": "x"}).matches({}, {"Model": "x"})


def test_needs_a_condition_and_scalar_values() -> None:
    with pytest.raises(ValueError, match="at least one"):
        CorrelationFilter()
    with pytest.raises(ValueError, match="at least one"):
        CorrelationFilter(properties={})
    with pytest.raises(ValueError, match="'p' must be a string, number or boolean"):
        CorrelationFilter(properties={"p": [1]})


def test_equality_and_accessors() -> None:
    one = CorrelationFilter(label="a", properties={"x": 1, "y": "z"})
    assert one == CorrelationFilter(label="a", properties={"y": "z", "x": 1})
    assert hash(one) == hash(CorrelationFilter(label="a", properties={"y": "z", "x": 1}))
    assert one != CorrelationFilter(label="b", properties={"x": 1, "y": "z"})
    assert one.system_properties == {"Label": "a"}
    assert one.properties == {"x": 1, "y": "z"}


def test_true_and_false_filters() -> None:
    assert TrueFilter().matches({}, {})
    assert TrueFilter().matches({"Label": "x"}, {"a": 1})
    assert not FalseFilter().matches({}, {})
    assert not FalseFilter().matches({"Label": "x"}, {"a": 1})
    assert TrueFilter() == TrueFilter()
    assert TrueFilter() != FalseFilter()
