"""Service Bus triggers and outputs through the real host process against the Service Bus emulator."""

from __future__ import annotations

import json
import os
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from azure.servicebus import ServiceBusClient, ServiceBusMessage, ServiceBusReceivedMessage

from devstack.servicebus.opcounts import read_operations
from tests.fixtures.azurite import Azurite
from tests.fixtures.servicebus import ServiceBusEmulator, ServiceBusFactory
from tests.integration.servicebus.sbhelp import admin
from tests.support.wait import wait_until

from .conftest import FixtureApp


def _entities() -> dict[str, Any]:
    queue = {"Name": "work", "Properties": {"LockDuration": "PT5S", "MaxDeliveryCount": 5}}
    return {
        "UserConfig": {
            "Namespaces": [
                {
                    "Name": "fixturens",
                    "Queues": [
                        queue,
                        {"Name": "done", "Properties": {}},
                        {"Name": "slow", "Properties": {"LockDuration": "PT2S"}},
                        {"Name": "slow-sessions", "Properties": {"LockDuration": "PT2S", "RequiresSession": True}},
                        {"Name": "batch", "Properties": {}},
                        {"Name": "manual", "Properties": {"LockDuration": "PT2S", "MaxDeliveryCount": 3}},
                    ],
                    "Topics": [
                        {
                            "Name": "events",
                            "Properties": {},
                            "Subscriptions": [{"Name": "sessions", "Properties": {"RequiresSession": True}}],
                        }
                    ],
                }
            ],
            "Logging": {"Type": "File"},
        }
    }


@pytest.fixture
def bus(servicebus_factory: ServiceBusFactory, tmp_path: Path) -> ServiceBusEmulator:
    config = tmp_path / "entities.json"
    config.write_text(json.dumps(_entities()), encoding="utf-8")
    return servicebus_factory(config)


def messages_left(bus: ServiceBusEmulator, queue: str) -> int:
    """Messages in ``queue`` not yet settled (locked ones included), from the administration API (a session
    queue cannot be peeked without taking a session)."""
    with admin(bus) as management:
        return int(management.get_queue_runtime_properties(queue).active_message_count)


def start_host(app: FixtureApp, azurite: Azurite, bus: ServiceBusEmulator, extensions: dict[str, Any]) -> None:
    app.write_settings(
        {
            "AzureWebJobsStorage": azurite.connection_string,
            "DataStorage": azurite.connection_string,
            "ServiceBus": bus.connection_string,
            "WATCH_CONTAINER": f"watch-{uuid.uuid4().hex[:8]}",
            "TICK_SCHEDULE": "0 0 0 1 1 *",
            "WORK_QUEUE": "work",
            "DONE_QUEUE": "done",
            "EVENTS_TOPIC": "events",
            "AzureFunctionsWebHost__hostid": f"sb-{uuid.uuid4().hex[:8]}",
        }
    )
    app.write_host_json({"serviceBus": {"maxConcurrentCalls": 2, "maxConcurrentSessions": 2, **extensions}})
    app.start(env={**os.environ, "FIXTURE_SERVICEBUS": "1"})


def receive_done(client: ServiceBusClient, count: int, timeout: float = 30) -> list[ServiceBusReceivedMessage]:
    received: list[ServiceBusReceivedMessage] = []
    deadline = time.monotonic() + timeout
    with client.get_queue_receiver("done") as receiver:
        while len(received) < count and time.monotonic() < deadline:
            for message in receiver.receive_messages(max_message_count=count, max_wait_time=1):
                receiver.complete_message(message)
                received.append(message)
    return received


@pytest.fixture
def client(bus: ServiceBusEmulator) -> Iterator[ServiceBusClient]:
    with ServiceBusClient.from_connection_string(bus.connection_string) as sb:
        yield sb


def operations(bus: ServiceBusEmulator) -> Counter[str]:
    """What the emulator has counted so far (it writes its counts at most once a second)."""
    return Counter(read_operations(bus.data_dir))


def send(client: ServiceBusClient, queue: str, *messages: ServiceBusMessage) -> None:
    with client.get_queue_sender(queue) as sender:
        sender.send_messages(list(messages))


def assert_settled(client: ServiceBusClient, queue: str, timeout: float = 10) -> None:
    """Nothing is left on ``queue`` (peek shows locked messages too): every message was completed."""

    def empty() -> bool:
        with client.get_queue_receiver(queue) as receiver:
            return receiver.peek_messages(max_message_count=10) == []

    wait_until(empty, timeout, f"every message on {queue} to be completed")


def test_message_fields_output_binding_and_completion(
    bus: ServiceBusEmulator, azurite: Azurite, fixture_app: FixtureApp, client: ServiceBusClient
) -> None:
    start_host(fixture_app, azurite, bus, {"sessionIdleTimeout": "00:00:02"})
    message = ServiceBusMessage(
        b'{"n": 1}', message_id="m-1", content_type="application/json", correlation_id="c-1",
        subject="subj", to="someone", reply_to="back", application_properties={"model": "churn", "n": 3},
        time_to_live=timedelta(minutes=10),
    )  # fmt: skip
    send(client, "work", message)
    (done,) = receive_done(client, 1)
    assert str(done) == 'done:{"n": 1}'
    assert done.content_type == "text/plain"
    (entry,) = fixture_app.wait_for("on_work", lambda e: len(e) == 1)
    assert entry["body"] == '{"n": 1}'
    assert (entry["message_id"], entry["content_type"], entry["correlation_id"]) == (
        "m-1",
        "application/json",
        "c-1",
    )
    assert (entry["subject"], entry["label"], entry["to"], entry["reply_to"]) == ("subj", "subj", "someone", "back")
    assert entry["delivery_count"] == 1
    assert entry["user_properties"] == {"model": "churn", "n": 3}
    assert entry["application_properties"] == {"model": "churn", "n": 3}
    assert entry["time_to_live"] == 600
    assert isinstance(entry["sequence_number"], int)
    assert entry["enqueued_time_utc"] and entry["locked_until"] and entry["expires_at_utc"]
    assert uuid.UUID(entry["lock_token"])
    assert_settled(client, "work")


def test_exception_abandons_and_the_message_is_redelivered(
    bus: ServiceBusEmulator, azurite: Azurite, fixture_app: FixtureApp, client: ServiceBusClient
) -> None:
    start_host(fixture_app, azurite, bus, {})
    send(client, "work", ServiceBusMessage("fail-once"))
    (done,) = receive_done(client, 1)
    assert str(done) == "done:fail-once"
    entries = fixture_app.recorded("on_work")
    assert [e["delivery_count"] for e in entries] == [1, 2]
    assert entries[0]["message_id"] == entries[1]["message_id"]


def test_sessions_each_message_in_order_per_session(
    bus: ServiceBusEmulator, azurite: Azurite, fixture_app: FixtureApp, client: ServiceBusClient
) -> None:
    start_host(fixture_app, azurite, bus, {"sessionIdleTimeout": "00:00:02"})
    with client.get_topic_sender("events") as sender:
        batch = sender.create_message_batch()
        for index in range(3):
            for session in ("s-a", "s-b", "s-c"):
                batch.add_message(ServiceBusMessage(f"{session}-{index}", session_id=session))
        sender.send_messages(batch)
    done = receive_done(client, 9, timeout=60)
    bodies = sorted(str(m) for m in done)
    assert bodies == sorted(f"session:{s}:{s}-{i}" for s in ("s-a", "s-b", "s-c") for i in range(3))
    entries = fixture_app.recorded("on_session_event")
    for session in ("s-a", "s-b", "s-c"):
        in_session = [e["body"] for e in entries if e["session_id"] == session]
        assert in_session == [f"{session}-{i}" for i in range(3)]


def test_lock_is_renewed_while_a_slow_function_runs(
    bus: ServiceBusEmulator, azurite: Azurite, fixture_app: FixtureApp, client: ServiceBusClient
) -> None:
    start_host(fixture_app, azurite, bus, {})
    send(client, "slow", ServiceBusMessage("5"))  # sleeps 5 s under a 2 s lock
    fixture_app.wait_for("on_slow", lambda e: len(e) == 1, timeout=30)
    # Settled means completed by the first call: with a lost lock its completion fails and the message stays
    # (redelivered during the 5 s call) until a later delivery completes it, after recording a second entry.
    assert_settled(client, "slow", timeout=30)
    assert [e["delivery_count"] for e in fixture_app.recorded("on_slow")] == [1]


def test_session_lock_is_renewed_while_a_slow_function_runs(
    bus: ServiceBusEmulator, azurite: Azurite, fixture_app: FixtureApp, client: ServiceBusClient
) -> None:
    start_host(fixture_app, azurite, bus, {"sessionIdleTimeout": "00:00:01"})
    send(client, "slow-sessions", *(ServiceBusMessage(body, session_id="s-slow") for body in ("5", "0")))
    fixture_app.wait_for("on_slow_session", lambda e: len(e) == 2, timeout=30)
    # A session lock lost during the 5 s call fails both completions: the messages stay until they have run
    # again, so once the queue is empty every call is recorded.
    wait_until(lambda: messages_left(bus, "slow-sessions") == 0, 30, "both session messages to be completed")
    entries = fixture_app.recorded("on_slow_session")
    assert [(e["body"], e["delivery_count"]) for e in entries] == [("5", 1), ("0", 1)]


def test_cardinality_many_gets_a_list(
    bus: ServiceBusEmulator, azurite: Azurite, fixture_app: FixtureApp, client: ServiceBusClient
) -> None:
    with client.get_queue_sender("batch") as sender:
        batch = sender.create_message_batch()
        for index in range(5):
            batch.add_message(ServiceBusMessage(f"b{index}", message_id=f"id-{index}"))
        sender.send_messages(batch)
    # Sent before the host starts, so one receive call can see them all.
    start_host(fixture_app, azurite, bus, {"maxMessageBatchSize": 10})
    entries = fixture_app.wait_for("on_batch", lambda e: sum(len(x["bodies"]) for x in e) >= 5)
    assert sorted(b for e in entries for b in e["bodies"]) == [f"b{i}" for i in range(5)]
    assert sorted(i for e in entries for i in e["ids"]) == [f"id-{i}" for i in range(5)]
    assert max(len(e["bodies"]) for e in entries) > 1
    assert_settled(client, "batch")


def test_cardinality_many_hands_over_a_lone_message_and_batches_what_follows_without_redelivery(
    bus: ServiceBusEmulator, azurite: Azurite, fixture_app: FixtureApp, client: ServiceBusClient
) -> None:
    # A batch starts with one message and takes what else arrives within the batch wait; a message the SDK
    # releases (one in flight as the host takes back the credit the batch left) must not count as a delivery or
    # reach the function twice.
    start_host(fixture_app, azurite, bus, {"maxMessageBatchSize": 10})
    send(client, "batch", ServiceBusMessage("alone", message_id="alone"))
    first = fixture_app.wait_for("on_batch", lambda e: len(e) >= 1)
    assert first[0]["bodies"] == ["alone"]
    for round_ in range(3):
        with client.get_queue_sender("batch") as sender:
            batch = sender.create_message_batch()
            for index in range(5):
                batch.add_message(ServiceBusMessage(f"r{round_}-{index}", message_id=f"r{round_}-{index}"))
            sender.send_messages(batch)
    entries = fixture_app.wait_for("on_batch", lambda e: sum(len(x["bodies"]) for x in e) >= 16)
    ids = [i for e in entries for i in e["ids"]]
    assert sorted(ids) == sorted(["alone", *(f"r{r}-{i}" for r in range(3) for i in range(5))])
    assert {c for e in entries for c in e["delivery_counts"]} == {1}
    assert_settled(client, "batch")


def test_cardinality_many_takes_back_unused_credit_so_messages_sent_during_a_batch_wait_at_the_broker(
    bus: ServiceBusEmulator, azurite: Azurite, fixture_app: FixtureApp, client: ServiceBusClient
) -> None:
    # Without prefetch, credit a batch receive left unused made the broker send what arrived meanwhile; the SDK
    # released each such message as the host settled the batch, and the broker sent it straight back.
    start_host(fixture_app, azurite, bus, {"maxMessageBatchSize": 10})
    send(client, "batch", ServiceBusMessage("slow:1.5", message_id="slow"))
    fixture_app.wait_for("on_batch", lambda e: len(e) >= 1)  # the batch runs for 1.5 s from here
    send(client, "batch", *(ServiceBusMessage(f"late-{i}", message_id=f"late-{i}") for i in range(5)))
    entries = fixture_app.wait_for("on_batch", lambda e: sum(len(x["bodies"]) for x in e) >= 6)
    assert entries[0]["ids"] == ["slow"]
    assert sorted(i for e in entries[1:] for i in e["ids"]) == [f"late-{i}" for i in range(5)]
    assert {c for e in entries for c in e["delivery_counts"]} == {1}
    assert_settled(client, "batch")
    wait_until(lambda: operations(bus)["settle complete"] >= 6, 10, "the completions to be counted")
    assert operations(bus)["settle abandon"] == 0


def test_auto_complete_off_leaves_settlement_to_lock_expiry(
    bus: ServiceBusEmulator, azurite: Azurite, fixture_app: FixtureApp, client: ServiceBusClient
) -> None:
    start_host(fixture_app, azurite, bus, {})
    send(client, "manual", ServiceBusMessage("left alone"))
    # Not completed although the function succeeded: redelivered after each 2 s lock expires.
    entries = fixture_app.wait_for("on_manual", lambda e: len(e) >= 2, timeout=30)
    assert [e["delivery_count"] for e in entries[:2]] == [1, 2]
    assert entries[0]["message_id"] == entries[1]["message_id"]
