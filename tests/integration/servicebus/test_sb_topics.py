"""Topic fan-out through subscription rules (SQL and correlation filters, SQL actions) and ForwardTo."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from azure.servicebus import ServiceBusMessage

from tests.fixtures.servicebus import ServiceBusEmulator
from tests.integration.servicebus.sbhelp import bodies, client, take


def test_fan_out_follows_each_subscription_rule(sb: ServiceBusEmulator) -> None:
    with client(sb) as c:
        with c.get_topic_sender("events") as sender:
            sender.send_messages(
                [
                    ServiceBusMessage("red-one", application_properties={"color": "red", "score": 1}),
                    ServiceBusMessage("big-blue", application_properties={"color": "blue", "size": "big"}),
                    ServiceBusMessage("urgent", subject="urgent"),
                ]
            )
        assert bodies(take(c, "events", "all")) == ["red-one", "big-blue", "urgent"]
        red = take(c, "events", "red", count=1)
        assert bodies(red) == ["red-one"]
        assert red[0].application_properties[b"tagged"] == b"yes"
        assert red[0].application_properties[b"score"] == 2
        assert bodies(take(c, "events", "big")) == ["big-blue"]
        assert bodies(take(c, "events", "labelled")) == ["urgent"]
        assert take(c, "events", "none", wait=0.2) == []
        # `to-queue` forwards blue messages to a queue and keeps nothing itself.
        assert take(c, "events", "to-queue", wait=0.2) == []
        assert bodies(take(c, "forward-out-topic")) == ["big-blue"]


def test_scheduled_topic_message_fans_out_when_due(sb: ServiceBusEmulator) -> None:
    with client(sb) as c:
        with c.get_topic_sender("events") as sender:
            at = datetime.now(UTC) + timedelta(seconds=3)
            sender.schedule_messages(
                ServiceBusMessage("later", application_properties={"color": "red", "score": 10}), at
            )
            cancelled = sender.schedule_messages(ServiceBusMessage("cancelled"), at)
            sender.cancel_scheduled_messages(cancelled)
        assert take(c, "events", "all", wait=0.2) == []
        assert bodies(take(c, "events", "all", wait=5, count=1)) == ["later"]
        assert take(c, "events", "all", wait=0.3) == []  # the cancelled one never fans out
        red = take(c, "events", "red", count=1)
        assert [(str(m), m.application_properties[b"score"]) for m in red] == [("later", 11)]


def test_queue_forward_to(sb: ServiceBusEmulator) -> None:
    with client(sb) as c:
        with c.get_queue_sender("forward-in") as sender:
            sender.send_messages(ServiceBusMessage("hop", message_id="fwd-1"))
        assert bodies(take(c, "forward-out", wait=2, count=1)) == ["hop"]
        assert take(c, "forward-in", wait=0.2) == []


def test_subscription_dead_letter_queue(sb: ServiceBusEmulator) -> None:
    with client(sb) as c:
        with c.get_topic_sender("events") as sender:
            sender.send_messages(ServiceBusMessage("bad", application_properties={"size": "big"}))
        with c.get_subscription_receiver("events", "big", max_wait_time=2) as receiver:
            (m,) = receiver.receive_messages(max_wait_time=2)
            receiver.dead_letter_message(m, reason="unreadable", error_description="not json")
        (dead,) = take(c, "events", "big", dead_letter=True, wait=2, count=1)
        assert str(dead) == "bad"
        assert dead.dead_letter_reason == "unreadable"
        assert dead.dead_letter_source == "events/Subscriptions/big"
        assert bodies(take(c, "events", "all", wait=1, count=1)) == ["bad"]  # its own copy, untouched
