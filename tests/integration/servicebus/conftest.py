"""One emulator process shared by the Service Bus emulator tests, with their own small entity config."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.servicebus import ServiceBusEmulator, ServiceBusFactory


def queue(name: str, **properties: Any) -> dict[str, Any]:
    return {"Name": name, "Properties": properties}


def subscription(name: str, rules: list[dict[str, Any]] | None = None, **properties: Any) -> dict[str, Any]:
    sub: dict[str, Any] = {"Name": name, "Properties": properties}
    if rules is not None:
        sub["Rules"] = rules
    return sub


def sql_rule(name: str, expression: str, action: str | None = None) -> dict[str, Any]:
    props: dict[str, Any] = {"FilterType": "Sql", "SqlFilter": {"SqlExpression": expression}}
    if action:
        props["Action"] = {"SqlExpression": action}
    return {"Name": name, "Properties": props}


def correlation_rule(name: str, **condition: Any) -> dict[str, Any]:
    return {"Name": name, "Properties": {"FilterType": "Correlation", "CorrelationFilter": condition}}


def write_config(path: Path, queues: list[dict[str, Any]], topics: list[dict[str, Any]] | None = None) -> Path:
    document = {
        "UserConfig": {
            "Namespaces": [{"Name": "sbemulatorns", "Queues": queues, "Topics": topics or []}],
            "Logging": {"Type": "File"},
        }
    }
    path.write_text(json.dumps(document, indent=2))
    return path


QUEUES = [
    queue("plain", LockDuration="PT30S"),
    queue("props", LockDuration="PT30S"),
    queue("batch", LockDuration="PT30S"),
    queue("aio", LockDuration="PT30S"),
    queue("scheduled", LockDuration="PT30S"),
    queue("settle", LockDuration="PT30S", MaxDeliveryCount=5),
    queue("settle-aio", LockDuration="PT30S", MaxDeliveryCount=5),
    queue("deferred", LockDuration="PT30S"),
    queue("renew", LockDuration="PT2S"),
    queue("expiring-lock", LockDuration="PT1S", MaxDeliveryCount=5),
    queue("poison", LockDuration="PT30S", MaxDeliveryCount=3),
    queue("ttl-dlq", DefaultMessageTimeToLive="PT1S", DeadLetteringOnMessageExpiration=True),
    queue("ttl-drop", DefaultMessageTimeToLive="PT1S"),
    queue("delete-mode"),
    queue("peek"),
    queue("prefetch"),
    queue("dedup", RequiresDuplicateDetection=True, DuplicateDetectionHistoryTimeWindow="PT1M"),
    queue("sessions", LockDuration="PT30S", RequiresSession=True),
    queue("sessions-aio", LockDuration="PT30S", RequiresSession=True),
    queue("sessions-order", LockDuration="PT30S", RequiresSession=True),
    queue("session-renew", LockDuration="PT2S", RequiresSession=True),
    queue("forward-in", ForwardTo="forward-out"),
    queue("forward-out"),
    queue("lock-lost", LockDuration="PT1S"),
    queue("admin-depth", LockDuration="PT30S", MaxDeliveryCount=1),
    queue("auto-renew", LockDuration="PT5S"),
    queue("auto-renew-aio", LockDuration="PT5S"),
    queue("auto-renew-session", LockDuration="PT5S", RequiresSession=True),
    queue("auto-renew-session-aio", LockDuration="PT5S", RequiresSession=True),
    queue("listed-sessions", RequiresSession=True),
    queue("listed-sessions-aio", RequiresSession=True),
]

TOPICS = [
    {
        "Name": "events",
        "Properties": {},
        "Subscriptions": [
            subscription("all"),
            subscription("red", [sql_rule("red", "color = 'red'", "SET tagged = 'yes'; SET score = score + 1")]),
            subscription("big", [correlation_rule("big", Properties={"size": "big"})]),
            subscription("labelled", [correlation_rule("by-label", Label="urgent")]),
            subscription("none", [sql_rule("never", "1 = 0")]),
            subscription("to-queue", [sql_rule("fwd", "color = 'blue'")], ForwardTo="forward-out-topic"),
        ],
    },
    {
        "Name": "admin-topic",
        "Properties": {},
        "Subscriptions": [
            subscription("all", MaxDeliveryCount=1),
            subscription("red", [sql_rule("red", "color = 'red'", "SET seen = 1")]),
            subscription("by-label", [correlation_rule("label", Label="urgent", Properties={"size": "big"})]),
        ],
    },
    {"Name": "session-topic", "Properties": {}, "Subscriptions": [subscription("s", RequiresSession=True)]},
]


@pytest.fixture(scope="session")
def sb_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_config(
        tmp_path_factory.mktemp("sbconfig") / "entities.json", [*QUEUES, queue("forward-out-topic")], TOPICS
    )


@pytest.fixture(scope="session")
def sb(sb_config: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceBusEmulator]:
    """The emulator the feature tests share (each test uses its own queue)."""
    factory = ServiceBusFactory(tmp_path_factory.mktemp("sbdata"))
    try:
        yield factory(sb_config)
    finally:
        factory.close()
