"""Entity configuration: the project's file, defaults, durations, forwarding, and a ConfigError for each mistake."""

from __future__ import annotations

import copy
import json
import logging
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from devstack.servicebus.config import (
    DEFAULT_RULE_NAME,
    ConfigError,
    EntityProperties,
    NamespaceConfig,
    load_config,
    parse_config,
)
from devstack.servicebus.filters import CorrelationFilter, SqlAction, SqlFilter, TrueFilter

TEST_ROUTES = Path(__file__).resolve().parents[2] / "fixtures" / "models-two-routes.json"


def project_config() -> NamespaceConfig:
    """The project's entities plus the subscriptions of two model routes, as the local stack writes them."""
    from devstack.routes import servicebus_config
    from shared.routes import load_routes

    return parse_config(servicebus_config(load_routes(TEST_ROUTES)))


NS = "UserConfig.Namespaces[0]"


def base() -> dict[str, Any]:
    """A valid document: queues q1, q2; topic t1 (subscriptions s1 with a SQL rule, s2 without rules); topic t2."""
    return {
        "UserConfig": {
            "Namespaces": [
                {
                    "Name": "sbemulatorns",
                    "Queues": [{"Name": "q1", "Properties": {}}, {"Name": "q2"}],
                    "Topics": [
                        {
                            "Name": "t1",
                            "Properties": {"RequiresDuplicateDetection": True},
                            "Subscriptions": [
                                {
                                    "Name": "s1",
                                    "Properties": {"MaxDeliveryCount": 3},
                                    "Rules": [
                                        {
                                            "Name": "r1",
                                            "Properties": {
                                                "FilterType": "Sql",
                                                "SqlFilter": {"SqlExpression": "a = 1"},
                                            },
                                        }
                                    ],
                                },
                                {"Name": "s2"},
                            ],
                        },
                        {"Name": "t2", "Properties": {}, "Subscriptions": [{"Name": "s1"}]},
                    ],
                }
            ],
            "Logging": {"Type": "File"},
        }
    }


def namespace(doc: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = doc["UserConfig"]["Namespaces"][0]
    return result


def rule_props(doc: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = namespace(doc)["Topics"][0]["Subscriptions"][0]["Rules"][0]["Properties"]
    return result


def test_project_config_loads_with_the_agreed_entities() -> None:
    config = project_config()
    assert config.name == "sbemulatorns"
    assert config.queues == ()
    requests, results = config.topic("inference-requests"), config.topic("inference-results")
    assert requests is not None and results is not None
    for topic in (requests, results):
        assert topic.properties.requires_duplicate_detection
        assert topic.properties.duplicate_detection_window == timedelta(minutes=10)
        assert topic.properties.default_ttl == timedelta(days=1)
    assert [s.name for s in requests.subscriptions] == ["scoring", "scoring-churn-v2"]
    assert [s.name for s in results.subscriptions] == ["writer", "client"]
    assert all(not s.properties.requires_session for s in requests.subscriptions)
    assert all(s.properties.requires_session for s in results.subscriptions)
    assert all(
        s.rules[0].name == DEFAULT_RULE_NAME and s.rules[0].filter == TrueFilter() for s in results.subscriptions
    )
    client = results.subscriptions[1]
    assert client.properties.default_ttl == timedelta(hours=1)
    assert not client.properties.dead_lettering_on_expiration


@pytest.mark.parametrize(
    ("user", "scoring", "churn_v2"),
    [
        ({"model": "default"}, True, False),
        ({}, False, False),
        ({"other": "x"}, False, False),
        ({"model": "churn"}, False, False),
        ({"model": "churn-v2"}, False, True),
        ({"model": "other"}, False, False),
    ],
)
def test_project_rules_route_by_model(user: dict[str, Any], scoring: bool, churn_v2: bool) -> None:
    topic = project_config().topic("inference-requests")
    assert topic is not None
    subscriptions = {s.name: s for s in topic.subscriptions}
    system = {"MessageId": "m1", "ContentType": "application/json"}
    assert subscriptions["scoring"].rules[0].filter.matches(system, user) is scoring
    assert isinstance(subscriptions["scoring"].rules[0].filter, CorrelationFilter)
    assert subscriptions["scoring-churn-v2"].rules[0].filter.matches(system, user) is churn_v2
    assert isinstance(subscriptions["scoring-churn-v2"].rules[0].filter, CorrelationFilter)


def test_defaults_are_the_cloud_service_defaults() -> None:
    config = parse_config(base())
    queue = config.queue("q1")
    assert queue is not None
    assert queue.properties == EntityProperties()
    assert queue.properties.lock_duration == timedelta(minutes=1)
    assert queue.properties.max_delivery_count == 10
    assert queue.properties.default_ttl is None
    assert queue.properties.duplicate_detection_window == timedelta(minutes=10)
    assert not queue.properties.requires_session
    assert not queue.properties.requires_duplicate_detection
    assert not queue.properties.dead_lettering_on_expiration
    assert queue.properties.forward_to is None


def test_subscription_without_rules_gets_the_default_true_rule() -> None:
    topic = parse_config(base()).topic("t1")
    assert topic is not None
    s1, s2 = topic.subscriptions
    assert s1.rules[0].name == "r1" and s1.rules[0].filter == SqlFilter("a = 1") and s1.rules[0].action is None
    assert s1.properties.max_delivery_count == 3
    assert len(s2.rules) == 1 and s2.rules[0].name == "$Default" and s2.rules[0].filter == TrueFilter()


def test_lookups_are_case_insensitive() -> None:
    config = parse_config(base())
    assert config.queue("Q1") is not None and config.topic("T2") is not None
    assert config.queue("t1") is None and config.topic("nope") is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("PT1M", timedelta(minutes=1)),
        ("PT10M", timedelta(minutes=10)),
        ("P1D", timedelta(days=1)),
        ("P14D", timedelta(days=14)),
        ("PT1H30M", timedelta(hours=1, minutes=30)),
        ("P1DT2H3M4S", timedelta(days=1, hours=2, minutes=3, seconds=4)),
        ("PT0.5S", timedelta(seconds=0.5)),
        ("P2W", timedelta(days=14)),
        ("P1Y", timedelta(days=365)),
        ("P1M", timedelta(days=30)),
    ],
)
def test_iso_durations(text: str, expected: timedelta) -> None:
    doc = base()
    namespace(doc)["Queues"][0]["Properties"] = {"DefaultMessageTimeToLive": text}
    queue = parse_config(doc).queue("q1")
    assert queue is not None and queue.properties.default_ttl == expected


def test_all_supported_properties_are_read() -> None:
    doc = base()
    namespace(doc)["Queues"][0]["Properties"] = {
        "LockDuration": "PT30S",
        "MaxDeliveryCount": 5,
        "RequiresSession": True,
        "DefaultMessageTimeToLive": "PT1H",
        "DeadLetteringOnMessageExpiration": True,
        "RequiresDuplicateDetection": True,
        "DuplicateDetectionHistoryTimeWindow": "PT20S",
        "ForwardTo": "",
        "ForwardDeadLetteredMessagesTo": "",
    }
    queue = parse_config(doc).queue("q1")
    assert queue is not None
    assert queue.properties == EntityProperties(
        lock_duration=timedelta(seconds=30),
        max_delivery_count=5,
        requires_session=True,
        default_ttl=timedelta(hours=1),
        dead_lettering_on_expiration=True,
        requires_duplicate_detection=True,
        duplicate_detection_window=timedelta(seconds=20),
        forward_to=None,
    )


def test_forward_to_names_the_target_as_configured() -> None:
    doc = base()
    namespace(doc)["Queues"][0]["Properties"] = {"ForwardTo": "T1"}
    namespace(doc)["Topics"][0]["Subscriptions"][1]["Properties"] = {"ForwardTo": "q2"}
    namespace(doc)["Queues"][1]["Properties"] = {"ForwardTo": "t2"}  # q1 -> t1 -> (s2) q2 -> t2: a chain
    config = parse_config(doc)
    q1, q2, t1 = config.queue("q1"), config.queue("q2"), config.topic("t1")
    assert q1 is not None and q2 is not None and t1 is not None
    assert q1.properties.forward_to == "t1"
    assert q2.properties.forward_to == "t2"
    assert t1.subscriptions[1].properties.forward_to == "q2"


def test_correlation_filter_and_action_are_built() -> None:
    doc = base()
    rule_props(doc).clear()
    rule_props(doc).update(
        {
            "FilterType": "Correlation",
            "CorrelationFilter": {"Label": "orders", "CorrelationId": "c", "Properties": {"region": "eu", "n": 1}},
            "Action": {"SqlExpression": "SET routed = TRUE"},
        }
    )
    topic = parse_config(doc).topic("t1")
    assert topic is not None
    rule = topic.subscriptions[0].rules[0]
    assert rule.filter == CorrelationFilter(label="orders", correlation_id="c", properties={"region": "eu", "n": 1})
    assert rule.action == SqlAction("SET routed = TRUE")
    assert rule.action is not None and rule.action.apply({}, {}) == {"routed": True}


def test_empty_action_is_no_action() -> None:
    doc = base()
    rule_props(doc)["Action"] = {"SqlExpression": "  "}
    topic = parse_config(doc).topic("t1")
    assert topic is not None and topic.subscriptions[0].rules[0].action is None


def test_only_the_first_namespace_is_served_and_a_warning_says_so(caplog: pytest.LogCaptureFixture) -> None:
    doc = base()
    second = copy.deepcopy(namespace(doc))
    second["Name"] = "other"
    doc["UserConfig"]["Namespaces"].append(second)
    with caplog.at_level(logging.WARNING, logger="devstack.servicebus.config"):
        config = parse_config(doc)
    assert isinstance(config, NamespaceConfig) and config.name == "sbemulatorns"
    assert "2 namespaces" in caplog.text


Mutation = Callable[[dict[str, Any]], None]


def _set(path: list[Any], value: Any) -> Mutation:
    def mutate(doc: dict[str, Any]) -> None:
        target: Any = doc
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value

    return mutate


def _delete(path: list[Any]) -> Mutation:
    def mutate(doc: dict[str, Any]) -> None:
        target: Any = doc
        for key in path[:-1]:
            target = target[key]
        del target[path[-1]]

    return mutate


NSP: list[Any] = ["UserConfig", "Namespaces", 0]
Q0P, Q1P = [*NSP, "Queues", 0, "Properties"], [*NSP, "Queues", 1]
T0, T1 = [*NSP, "Topics", 0], [*NSP, "Topics", 1]
S0 = [*T0, "Subscriptions", 0]
R0 = [*S0, "Rules", 0, "Properties"]
SUB0 = f"{NS}.Topics[0].Subscriptions[0]"
RULE0 = f"{SUB0}.Rules[0].Properties"

CASES: list[tuple[str, Mutation, str, str]] = [
    (
        "topic lock",
        _set([*T1, "Properties", "LockDuration"], "PT1X"),
        f"{NS}.Topics[1].Properties.LockDuration",
        "'PT1X' is not an ISO-8601 duration",
    ),
    (
        "empty duration",
        _set([*Q0P, "LockDuration"], "PT"),
        f"{NS}.Queues[0].Properties.LockDuration",
        "not an ISO-8601 duration",
    ),
    (
        "number duration",
        _set([*Q0P, "DefaultMessageTimeToLive"], 60),
        f"{NS}.Queues[0].Properties.DefaultMessageTimeToLive",
        "expected a string, got 60",
    ),
    ("lock too long", _set([*Q0P, "LockDuration"], "PT10M"), f"{NS}.Queues[0].Properties.LockDuration", "at most PT5M"),
    ("zero lock", _set([*Q0P, "LockDuration"], "PT0S"), f"{NS}.Queues[0].Properties.LockDuration", "longer than zero"),
    (
        "zero ttl",
        _set([*Q0P, "DefaultMessageTimeToLive"], "P0D"),
        f"{NS}.Queues[0].Properties.DefaultMessageTimeToLive",
        "longer than zero",
    ),
    (
        "long window",
        _set([*T0, "Properties", "DuplicateDetectionHistoryTimeWindow"], "P8D"),
        f"{NS}.Topics[0].Properties.DuplicateDetectionHistoryTimeWindow",
        "at most P7D",
    ),
    (
        "delivery 0",
        _set([*S0, "Properties", "MaxDeliveryCount"], 0),
        f"{SUB0}.Properties.MaxDeliveryCount",
        "at least 1",
    ),
    (
        "delivery text",
        _set([*Q0P, "MaxDeliveryCount"], "10"),
        f"{NS}.Queues[0].Properties.MaxDeliveryCount",
        "expected an integer",
    ),
    (
        "delivery bool",
        _set([*Q0P, "MaxDeliveryCount"], True),
        f"{NS}.Queues[0].Properties.MaxDeliveryCount",
        "expected an integer",
    ),
    (
        "session text",
        _set([*Q0P, "RequiresSession"], "yes"),
        f"{NS}.Queues[0].Properties.RequiresSession",
        "expected true or false",
    ),
    (
        "typo key",
        _set([*Q0P, "LockDuraton"], "PT1M"),
        f"{NS}.Queues[0].Properties.LockDuraton",
        "did you mean 'LockDuration'?",
    ),
    (
        "wrong case key",
        _set([*Q0P, "lockduration"], "PT1M"),
        f"{NS}.Queues[0].Properties.lockduration",
        "did you mean 'LockDuration'?",
    ),
    (
        "session on topic",
        _set([*T0, "Properties", "RequiresSession"], True),
        f"{NS}.Topics[0].Properties.RequiresSession",
        "does not apply to a topic",
    ),
    (
        "dedup on subscription",
        _set([*S0, "Properties", "RequiresDuplicateDetection"], True),
        f"{SUB0}.Properties.RequiresDuplicateDetection",
        "does not apply to a subscription",
    ),
    (
        "forward dlq on topic",
        _set([*T0, "Properties", "ForwardDeadLetteredMessagesTo"], "q1"),
        f"{NS}.Topics[0].Properties.ForwardDeadLetteredMessagesTo",
        "does not apply to a topic",
    ),
    ("duplicate queue", _set([*Q1P, "Name"], "Q1"), f"{NS}.Queues[1].Name", f"already used by {NS}.Queues[0]"),
    ("queue named as topic", _set([*T1, "Name"], "q2"), f"{NS}.Topics[1].Name", f"already used by {NS}.Queues[1]"),
    (
        "duplicate subscription",
        _set([*T0, "Subscriptions", 1, "Name"], "S1"),
        f"{NS}.Topics[0].Subscriptions[1].Name",
        "already used",
    ),
    (
        "duplicate rule",
        lambda d: namespace(d)["Topics"][0]["Subscriptions"][0]["Rules"].append(
            copy.deepcopy(namespace(d)["Topics"][0]["Subscriptions"][0]["Rules"][0])
        ),
        f"{SUB0}.Rules[1].Name",
        f"already used by {SUB0}.Rules[0]",
    ),
    (
        "forward missing",
        _set([*Q0P, "ForwardTo"], "nowhere"),
        f"{NS}.Queues[0].Properties.ForwardTo",
        "'nowhere' is not a queue or topic",
    ),
    ("forward self", _set([*Q0P, "ForwardTo"], "q1"), f"{NS}.Queues[0].Properties.ForwardTo", "itself"),
    (
        "forward to subscription",
        _set([*S0, "Properties", "ForwardTo"], "s2"),
        f"{SUB0}.Properties.ForwardTo",
        "not a queue or topic",
    ),
    (
        "forward loop",
        lambda d: (_set([*Q0P, "ForwardTo"], "q2")(d), _set([*Q1P, "Properties"], {"ForwardTo": "q1"})(d)),
        f"{NS}.Queues[0].Properties.ForwardTo",
        "loops back: q1 -> q2 -> q1",
    ),
    ("topic loop", _set([*S0, "Properties", "ForwardTo"], "t1"), f"{SUB0}.Properties.ForwardTo", "itself"),
    ("filter type", _set([*R0, "FilterType"], "Xml"), f"{RULE0}.FilterType", "'Xml' is not a filter type"),
    ("no filter type", _delete([*R0, "FilterType"]), f"{RULE0}.FilterType", "is required"),
    ("no sql filter", _delete([*R0, "SqlFilter"]), f"{RULE0}.SqlFilter", "is required"),
    ("no sql expression", _set([*R0, "SqlFilter"], {}), f"{RULE0}.SqlFilter.SqlExpression", "is required"),
    (
        "sql typo",
        _set([*R0, "SqlFilter", "SqlExpression"], "model = 'churn' ORR x = 1"),
        f"{RULE0}.SqlFilter.SqlExpression",
        "column 17: expected AND, OR or the end",
    ),
    ("action typo", _set([*R0, "Action"], {"SqlExpression": "SET a = "}), f"{RULE0}.Action.SqlExpression", "column 9"),
    ("action not object", _set([*R0, "Action"], "SET a = 1"), f"{RULE0}.Action", "expected an object"),
    (
        "both filters",
        _set([*R0, "CorrelationFilter"], {"Label": "x"}),
        f"{RULE0}.CorrelationFilter",
        "given, but FilterType is 'Sql'",
    ),
    (
        "empty correlation",
        lambda d: (
            rule_props(d).update(FilterType="Correlation", CorrelationFilter={}) or rule_props(d).pop("SqlFilter")
        ),
        f"{RULE0}.CorrelationFilter",
        "has no condition",
    ),
    (
        "correlation value",
        lambda d: (
            rule_props(d).update(FilterType="Correlation", CorrelationFilter={"Properties": {"model": {"x": 1}}})
            or rule_props(d).pop("SqlFilter")
        ),
        f"{RULE0}.CorrelationFilter.Properties.model",
        "expected a string, number or boolean",
    ),
    (
        "correlation null",
        lambda d: (
            rule_props(d).update(FilterType="Correlation", CorrelationFilter={"Properties": {"model": None}})
            or rule_props(d).pop("SqlFilter")
        ),
        f"{RULE0}.CorrelationFilter.Properties.model",
        "expected a string, number or boolean",
    ),
    (
        "correlation empty properties",
        lambda d: (
            rule_props(d).update(FilterType="Correlation", CorrelationFilter={"Properties": {}})
            or rule_props(d).pop("SqlFilter")
        ),
        f"{RULE0}.CorrelationFilter.Properties",
        "is empty",
    ),
    (
        "correlation key",
        lambda d: (
            rule_props(d).update(FilterType="Correlation", CorrelationFilter={"Labl": "x"})
            or rule_props(d).pop("SqlFilter")
        ),
        f"{RULE0}.CorrelationFilter.Labl",
        "did you mean 'Label'?",
    ),
    (
        "correlation id type",
        lambda d: (
            rule_props(d).update(FilterType="Correlation", CorrelationFilter={"CorrelationId": 5})
            or rule_props(d).pop("SqlFilter")
        ),
        f"{RULE0}.CorrelationFilter.CorrelationId",
        "expected a string",
    ),
    ("no rule properties", _delete([*S0, "Rules", 0, "Properties"]), f"{SUB0}.Rules[0].Properties", "is required"),
    ("no queue name", _delete([*Q1P, "Name"]), f"{NS}.Queues[1].Name", "is required"),
    ("bad name", _set([*Q1P, "Name"], "bad name!"), f"{NS}.Queues[1].Name", "'bad name!' is not a valid name"),
    ("slash in subscription", _set([*S0, "Name"], "a/b"), f"{SUB0}.Name", "is not a valid name"),
    ("name not string", _set([*T0, "Name"], 7), f"{NS}.Topics[0].Name", "expected a string, got 7"),
    ("no namespaces", _set(["UserConfig", "Namespaces"], []), "UserConfig.Namespaces", "at least one namespace"),
    ("no user config", _delete(["UserConfig"]), "UserConfig", "is required"),
    ("queues not array", _set([*NSP, "Queues"], {}), f"{NS}.Queues", "expected an array, got an object"),
    ("queue not object", _set([*NSP, "Queues", 1], "q2"), f"{NS}.Queues[1]", "expected an object"),
    ("namespace typo", _set([*NSP, "Topcis"], []), f"{NS}.Topcis", "did you mean 'Topics'?"),
    (
        "topic key typo",
        _set([*T0, "Subscription"], []),
        f"{NS}.Topics[0].Subscription",
        "did you mean 'Subscriptions'?",
    ),
    ("root typo", _set(["UserConfg"], {}), "UserConfg", "did you mean 'UserConfig'?"),
    ("properties not object", _set(Q0P, []), f"{NS}.Queues[0].Properties", "expected an object, got an array"),
]


@pytest.mark.parametrize(("mutate", "field", "fragment"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_each_mistake_is_a_config_error_naming_its_field(mutate: Mutation, field: str, fragment: str) -> None:
    doc = base()
    parse_config(copy.deepcopy(doc))  # the base document is valid
    mutate(doc)
    with pytest.raises(ConfigError) as caught:
        parse_config(doc)
    error = caught.value
    assert isinstance(error, ValueError)
    assert error.field == field
    assert str(error).startswith(f"{field}: ")
    assert fragment in str(error)


def test_not_an_object_at_the_root() -> None:
    with pytest.raises(ConfigError, match=r"^\(root\): expected an object, got an array"):
        parse_config([])


def test_file_errors_name_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "missing.json"
    with pytest.raises(ConfigError) as caught:
        load_config(missing)
    assert caught.value.field == str(missing) and "cannot read" in str(caught.value)

    broken = tmp_path / "broken.json"
    broken.write_text('{"UserConfig": {\n  "Namespaces": [,]\n}}', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"not valid JSON: .* at line 2 column"):
        load_config(broken)

    doubled = tmp_path / "doubled.json"
    doubled.write_text('{"UserConfig": {"Namespaces": [], "Namespaces": []}}', encoding="utf-8")
    with pytest.raises(ConfigError, match="'Namespaces' appears twice"):
        load_config(doubled)


def test_load_config_reads_a_file(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(base()), encoding="utf-8")
    assert load_config(path) == parse_config(base())
    assert load_config(str(path)).name == "sbemulatorns"


def test_keys_of_microsofts_format_that_are_not_emulated_are_accepted_and_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    doc = base()
    doc["$schema"] = "Config-schema.json"
    namespace(doc)["Queues"][0]["Properties"] = {"ForwardDeadLetteredMessagesTo": "q2"}
    namespace(doc)["Topics"][0]["Subscriptions"][1]["Properties"] = {"ForwardDeadLetteredMessagesTo": ""}
    with caplog.at_level(logging.INFO, logger="devstack.servicebus.config"):
        config = parse_config(doc)
    assert config.queue("q1") is not None
    assert "Queues[0].Properties.ForwardDeadLetteredMessagesTo is not emulated" in caplog.text
    assert "Subscriptions[1]" not in caplog.text  # an empty value is not worth a line
